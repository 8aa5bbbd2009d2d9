"""The ASGI app: routing, authentication, fault injection and request accounting.

Both the in-process transport and the socket server drive this same app, so behaviour is
identical either way. A dropped connection is signalled by raising `ConnectionDropped` out of
the app before any response is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio

from . import _routes_accounts as accounts
from . import _routes_edit as edit
from . import _routes_files as files
from . import _routes_jobs as jobs
from . import _routes_music as music
from . import _routes_sim as sim
from ._context import Ctx
from ._faults import Dice
from ._media import MediaSigner
from ._state import World
from ._wire import ApiError, ConnectionDropped, Request, Response

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Handler = Callable[[Ctx], Awaitable[Response]]

API_PREFIX = ("v1", "flowmusic")
SIM_PREFIX = ("_sim",)


@dataclass(frozen=True)
class Route:
    method: str
    prefix: tuple[str, ...]
    pattern: tuple[str, ...]  # "{name}" segments are path parameters
    handler: Handler
    public: bool = False  # no auth, no faults, not counted (simulator plumbing)

    @property
    def key(self) -> str:
        """The endpoint key used by stats and fault knobs, e.g. "GET /jobs/{jobid}"."""
        path = "/".join(self.pattern if self.prefix == API_PREFIX else self.prefix + self.pattern)
        return f"{self.method} /{path}"

    def match(self, segments: tuple[str, ...]) -> dict[str, str] | None:
        if self.prefix == SIM_PREFIX and segments[:2] == API_PREFIX:
            segments = segments[2:]  # /v1/flowmusic/_sim/... too: clients resolve against base_url
        n = len(self.prefix)
        if segments[:n] != self.prefix or len(segments) - n != len(self.pattern):
            return None
        params = {}
        for want, got in zip(self.pattern, segments[n:], strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def _api(method: str, path: str, handler: Handler) -> Route:
    return Route(method, API_PREFIX, tuple(path.strip("/").split("/")), handler)


ROUTES = (
    _api("POST", "/accounts", accounts.post_accounts),
    _api("GET", "/accounts", accounts.get_accounts),
    _api("GET", "/accounts/usage", accounts.get_usage),
    _api("GET", "/accounts/{email}", accounts.get_account),
    _api("DELETE", "/accounts/{email}", accounts.delete_account),
    _api("POST", "/music", music.post_music),
    _api("GET", "/music", music.get_music),
    _api("POST", "/music/edit", edit.post_edit),
    _api("POST", "/music/lyrics", music.post_lyrics),
    _api("GET", "/music/download", music.get_download),
    _api("POST", "/files", files.post_files),
    _api("POST", "/files/generate", files.post_generate),
    _api("GET", "/jobs", jobs.get_jobs),
    _api("GET", "/jobs/{jobid}", jobs.get_job),
    _api("DELETE", "/jobs/{jobid}", jobs.delete_job),
    Route("GET", SIM_PREFIX, ("stats",), sim.get_stats, public=True),
    Route("GET", SIM_PREFIX, ("faults",), sim.get_faults, public=True),
    Route("POST", SIM_PREFIX, ("faults",), sim.post_faults, public=True),
    # Media is public (no auth) but counted and subject to faults, like a real CDN.
    Route("GET", SIM_PREFIX, ("media", "{file}"), sim.get_media),
)
_UNAUTHORIZED = ApiError(401, "Unauthorized")


class App:
    """ASGI 3 application serving the Flow Music API from a `World`."""

    def __init__(self, world: World, media: MediaSigner, dice: Dice) -> None:
        self.world = world
        self.media = media
        self.dice = dice

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        request = request_from_scope(scope, bytes(body))
        response = await self.handle(request)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        payload = response.body
        if request.method == "HEAD":
            # HEAD is GET without the body: same status and headers, the GET's length.
            headers.append((b"content-length", str(len(payload)).encode()))
            payload = b""
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def handle(self, req: Request) -> Response:
        """Route and answer one request; raises ConnectionDropped to drop the connection.

        HEAD is answered as the GET of the same path (the caller drops the body); a method a
        known path does not take answers 405 with `Allow`.
        """
        route, params, fallback = _route(req)
        if route is None:
            return fallback
        if route.public:
            return await self._call(route, req, params, uid="")
        stats = self.world.stats
        try:
            response = await self._faulty(route, req, params)
        except ConnectionDropped:
            stats.requests[(route.key, 0)] += 1
            raise
        stats.requests[(route.key, response.status)] += 1
        if response.status == 429:
            stats.responses_429 += 1
        return response

    async def _faulty(self, route: Route, req: Request, params: dict[str, str]) -> Response:
        faults, dice = self.world.faults, self.dice
        if faults.latency_s > 0:
            await anyio.sleep(faults.latency_s)
        if dice.hit(faults.drop_rate, route.key):
            raise ConnectionDropped
        if dice.hit(faults.error_rate, route.key):
            return ApiError(500, "Internal Server Error (simulated)").response()
        uid = ""
        self.world.trip_account_errors()  # `account_error_after` = 0 breaks it before any job
        if route.prefix == API_PREFIX:
            found = self.world.tokens.get(_bearer_token(req.headers.get("authorization", "")))
            if found is None:
                return _UNAUTHORIZED.response()
            uid = found
        response = await self._call(route, req, params, uid)
        if (
            response.status < 300
            and response.is_json
            and dice.hit(faults.malformed_rate, route.key)
        ):
            cut = response.body[: max(1, len(response.body) // 2)]
            response = Response(response.status, cut + b"<simulated garbage", response.headers)
        return response

    async def _call(self, route: Route, req: Request, params: dict[str, str], uid: str) -> Response:
        ctx = Ctx(
            world=self.world, media=self.media, req=req, uid=uid, params=params, dice=self.dice
        )
        try:
            return await route.handler(ctx)
        except ApiError as exc:
            return exc.response()


def _route(req: Request) -> tuple[Route | None, dict[str, str], Response]:
    """The route for a request, or the 404/405 answer.

    A literal segment beats a parameter (`/accounts/usage` is not an account called "usage"),
    so a path belongs to the routes with the fewest parameters that match it.
    """
    method = "GET" if req.method == "HEAD" else req.method
    matches = [(r, p) for r in ROUTES if (p := r.match(req.segments)) is not None]
    if not matches:
        return None, {}, ApiError(404, "Not found").response()
    fewest = min(len(p) for _, p in matches)
    resource = [(r, p) for r, p in matches if len(p) == fewest]
    for route, params in resource:
        if route.method == method:
            return route, params, Response(0)
    allowed = {route.method for route, _ in resource}
    if "GET" in allowed:
        allowed.add("HEAD")
    allow = [("allow", ", ".join(sorted(allowed)))]
    return None, {}, ApiError(405, "Method not allowed", headers=allow).response()


def _bearer_token(header: str) -> str:
    """The token of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110)."""
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def request_from_scope(scope: Scope, body: bytes) -> Request:
    """Build a Request; each path segment is percent-decoded exactly once."""
    raw = scope.get("raw_path") or scope["path"].encode()
    raw_path = bytes(raw).split(b"?", 1)[0].decode("utf-8", "replace")
    segments = tuple(unquote(seg) for seg in raw_path.split("/")[1:])
    query = parse_qs(
        bytes(scope.get("query_string", b"")).decode("utf-8", "replace"), keep_blank_values=True
    )
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    origin = f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}"
    return Request(scope["method"], segments, query, headers, body, origin)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
