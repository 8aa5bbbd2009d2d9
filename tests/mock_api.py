"""A scripted fake Flow Music server on httpx.MockTransport, shared by the client's unit tests."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

TOKEN = "user:1001-SeCrEtToKeN0123456789"
BASE = "https://api.useapi.net/v1/flowmusic"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class MockAPI:
    """A fake Flow Music server that records every request and plays queued answers in order."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._answers: deque[Answer] = deque()

    def reply(
        self,
        status: int = 200,
        json_body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> MockAPI:
        for _ in range(times):
            if content is not None:
                answer = httpx.Response(status, content=content, headers=headers)
            elif json_body is not None:
                answer = httpx.Response(status, json=json_body, headers=headers)
            else:
                answer = httpx.Response(status, headers=headers)
            self._answers.append(answer)
        return self

    def fail(self, error: Exception, *, times: int = 1) -> MockAPI:
        for _ in range(times):
            self._answers.append(error)
        return self

    def handler(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if not self._answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self._answers.popleft()
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)
