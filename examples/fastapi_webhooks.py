"""A FastAPI app that generates songs and learns of their end from useapi.net's webhooks.

Needs: fastapi (the `examples` extra) and uvicorn, and two settings: PUBLIC_URL (where
useapi.net reaches this app) and USEAPI_TOKEN.

    POST /songs {"prompt": "..."}     -> 202 {"jobid": "...", "status": "pending"}
    POST /flowmusic-callback          <- useapi.net, when the job ends (the job's `replyUrl`)
    GET  /songs/{jobid}               -> 202 while it runs, then 200 with the clips

`fm.submit` returns as soon as the job is accepted, so the request answers at once. The
callback goes through `fm.webhooks.handle` with the URL it arrived at: the client put a secret
in each job's `replyUrl`, and a callback that brings it back settles its job without another
request; any other is confirmed with GET /jobs/{jobid} first. If a callback is lost, the
client's poller still finds the end, only later. (Your server's access log prints callback
URLs, secret included: keep it private, or its query strings out.)

Run it from a checkout (the package is not on PyPI yet); your public URL must reach this
app, e.g. through a tunnel:

    python3 -m pip install -e ".[examples]" uvicorn
    export USEAPI_TOKEN=... PUBLIC_URL=https://songs.example.com
    uvicorn --app-dir examples fastapi_webhooks:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

from flowmusic_async import FlowMusic, JobFailed, JobHandle

CALLBACK_PATH = "/flowmusic-callback"


class SongRequest(BaseModel):
    prompt: str
    instrumental: bool = False


def create_app(*, public_url: str, fm: FlowMusic | None = None) -> FastAPI:
    """The app; without `fm`, it opens its own `FlowMusic()` (token from USEAPI_TOKEN).

    Args:
        public_url: where useapi.net can reach this app; the callback URL is built from it.
        fm: an open client to use (tests pass one bound to the simulator); its owner closes it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if fm is not None:
            app.state.fm = fm
            yield
            return
        async with FlowMusic() as own:
            app.state.fm = own
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.fm = fm
    # jobid -> the handle `submit` returned. A real app would keep jobids in its database and
    # use `await fm.wait(jobid)` after a restart.
    handles: dict[str, JobHandle] = {}

    @app.post("/songs", status_code=202)
    async def create_song(song: SongRequest, request: Request) -> dict[str, str]:
        client: FlowMusic = request.app.state.fm
        handle = await client.submit(
            song.prompt,
            instrumental=song.instrumental,
            reply_url=public_url.rstrip("/") + CALLBACK_PATH,
        )
        handles[handle.jobid] = handle
        return {"jobid": handle.jobid, "status": "pending"}

    @app.post(CALLBACK_PATH)
    async def callback(request: Request) -> Response:
        client: FlowMusic = request.app.state.fm
        result = await client.webhooks.handle(await request.body(), url=str(request.url))
        return Response(status_code=result.http_status)

    @app.get("/songs/{jobid}")
    async def get_song(jobid: str, response: Response) -> dict[str, Any]:
        handle = handles.get(jobid)
        if handle is None:
            raise HTTPException(status_code=404, detail="unknown job")
        if not handle.done:
            response.status_code = 202
            return {"jobid": jobid, "status": "pending"}
        try:
            job = await handle
        except JobFailed as error:
            return {"jobid": jobid, "status": "failed", "error": str(error)}
        clips = [
            {"title": clip.title, "duration_s": clip.duration_s, "audio_url": clip.audio_url}
            for clip in job.clips
        ]
        return {"jobid": jobid, "status": "completed", "clips": clips}

    return app


SETTINGS = ("PUBLIC_URL", "USEAPI_TOKEN")

if all(os.environ.get(name) for name in SETTINGS):  # `uvicorn fastapi_webhooks:app`
    app = create_app(public_url=os.environ["PUBLIC_URL"])


def __getattr__(name: str) -> Any:
    """`uvicorn fastapi_webhooks:app` without its settings: a one-line message naming them,
    not uvicorn's "Attribute app not found" or a traceback from the first request."""
    if name == "app":
        missing = " and ".join(n for n in SETTINGS if not os.environ.get(n))
        raise SystemExit(f"fastapi_webhooks.py: set {missing} (see the top of this file)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
