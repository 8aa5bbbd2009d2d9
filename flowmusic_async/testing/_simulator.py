"""Simulator: the public face that wires clock, world, app, transport, server and webhooks."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from ._app import App
from ._clock import Clock
from ._faults import Dice, Faults
from ._media import MediaSigner
from ._server import HttpServer
from ._state import AccountState, SimAccount, World
from ._state import operation_costs as operation_costs_with
from ._stats import SimStats
from ._transport import SimTransport
from ._webhooks import WebhookDispatcher

if TYPE_CHECKING:
    from .._client import FlowMusic

DEFAULT_TOKEN = "user:1001-simulatortoken"
IN_PROCESS_BASE_URL = "http://localhost/v1/flowmusic"


def default_moderate(prompt: str) -> bool:
    """The default moderation rule: a prompt containing "[moderate]" is refused."""
    return "[moderate]" in prompt


class Simulator:
    """A stateful in-memory Flow Music API, in-process or over a loopback socket.

    One simulator may be shared by any number of clients and tasks (all in one event loop).
    Job state advances lazily from a clock scaled by `time_scale`; only webhook delivery needs
    background work, which runs inside `async with sim:` or `sim.serve()`.

    Args:
        accounts: the configured Flow Music accounts.
        tokens: accepted API tokens; the user id is parsed from "user:<uid>-...".
        time_scale: real seconds per simulated second (0.01: a 40-150 s song takes 0.4-1.5 s).
        seed: makes durations, titles, ids and failures reproducible.
        moderate: prompt -> refuse? A refused song (or edit) renders, then ends failed with
            "moderation_reject": async answers 201 first; sync answers 422 with the failed
            record after the render, as the POST /music page shows. Default: the prompt
            contains "[moderate]".
        job_failure_rate: share of accepted jobs that end failed (error.code "moderation_reject");
            a sync one answers 422 with the record at its end.
        song_credits: credits spent per accepted song (and extend/replace/cover/remix).
        operation_costs: credits per operation, over those defaults: keys "song", "extend",
            "replace", "cover", "remix", "effect", "stems", "lyrics" (effect, stems and lyrics
            are free unless given a cost here). Every charge moves the account's
            `credits_remaining`/`tokens_remaining`, its GET /accounts/usage report and
            `stats.credits_spent`; a paid operation the balance cannot cover answers 402. A
            job is charged when accepted: cancelling does not refund it, nor does a failure
            while rendering; a moderation refusal is not charged
            (docs/api-notes.md#q32-failed-job-cost).
        retention_s: simulated seconds a finished job stays readable, then 404.
        retry_after_s: the wait a 429 asks for, in simulated seconds; sent scaled, as whole
            seconds rounded up (at least 1) in Retry-After and exactly in X-Sim-Retry-After.
            None: neither header.
        media_url_ttl_s: simulated seconds a signed media URL lives; None: unsigned, forever.
        webhook_transport: httpx transport for webhook delivery; None: the real network.
        faults: fault knobs (all off by default); also reachable as `sim.faults`.
    """

    def __init__(
        self,
        *,
        accounts: Sequence[SimAccount] = (SimAccount(email="alpha@example.com"),),
        tokens: Sequence[str] = (DEFAULT_TOKEN,),
        time_scale: float = 1.0,
        seed: int = 0,
        moderate: Callable[[str], bool] | None = None,
        job_failure_rate: float = 0.0,
        song_credits: float = 10.0,
        operation_costs: Mapping[str, float] | None = None,
        retention_s: float = 7 * 86400,
        retry_after_s: float | None = 10.0,
        media_url_ttl_s: float | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        faults: Faults | None = None,
    ) -> None:
        if not tokens:
            raise ValueError("at least one accepted token is needed")
        self.clock: Clock = Clock(time_scale)
        self.stats: SimStats = SimStats()
        self.world: World = World(
            accounts=accounts,
            tokens=tokens,
            clock=self.clock,
            seed=seed,
            moderate=moderate or default_moderate,
            job_failure_rate=job_failure_rate,
            costs=operation_costs_with(song_credits, operation_costs or {}),
            retention_s=retention_s,
            retry_after_s=retry_after_s,
            faults=faults if faults is not None else Faults(),
            stats=self.stats,
        )
        secret = hashlib.sha256(f"media:{seed}".encode()).digest()
        media = MediaSigner(self.clock, media_url_ttl_s, secret)
        self.app: App = App(self.world, media, Dice(seed))
        self._webhooks = WebhookDispatcher(self.world, media, webhook_transport)
        self.world.on_job_end = self._webhooks.schedule
        self.token: str = tokens[0]
        self.base_url = IN_PROCESS_BASE_URL
        self._exit_stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        accounts = list(self.world.accounts)
        return f"<Simulator accounts={accounts} time_scale={self.clock.time_scale}>"

    @property
    def faults(self) -> Faults:
        return self.world.faults

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that runs the API in-process (use with `base_url`)."""
        return SimTransport(self.app)

    def client(self, **options: Any) -> FlowMusic:
        """A `FlowMusic` bound to this simulator in-process, its `Timing` matching `time_scale`.

        Use as ``async with sim.client() as fm:``. `options` go to `FlowMusic` (e.g.
        `event_hooks`, `max_retries`, or a `timing` of your own).
        """
        # Imported here: the simulator is an independent implementation of the API and does
        # not need the client to load.
        from .._client import FlowMusic
        from .._timing import Timing

        options.setdefault("timing", Timing.scaled(self.clock.time_scale))
        return FlowMusic(
            token=self.token, base_url=self.base_url, transport=self.transport(), **options
        )

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve over a real loopback HTTP/1.1 socket; yields the base URL."""
        # The caller's own exception is re-raised after the task group closes, so it comes
        # out as itself rather than wrapped in an ExceptionGroup.
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            bound = await tg.start(HttpServer(self.app).serve, host, port)
            if not self._webhooks.running:
                await tg.start(self._webhooks.run)
            shown = f"[{host}]" if ":" in host else host
            try:
                yield f"http://{shown}:{bound}/v1/flowmusic"
            except Exception as exc:
                error = exc
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error

    async def __aenter__(self) -> Simulator:
        if self._exit_stack is not None:
            raise RuntimeError("the simulator is already entered")
        stack = AsyncExitStack()
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)  # runs before the task group exits
        if not self._webhooks.running:
            await tg.start(self._webhooks.run)
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            # The body's exception is not handed to the task group, so it propagates unwrapped.
            await stack.__aexit__(None, None, None)

    # control --------------------------------------------------------------------------------

    def set_account_error(self, email: str, reason: str) -> None:
        """Put an account in error state: its calls answer 596 with `reason`."""
        self._account(email).error = reason

    def clear_account_error(self, email: str) -> None:
        self._account(email).error = None

    def set_credits(self, email: str, credits: float) -> None:
        """Set an account's balance (a top-up or a drain), without a usage event."""
        self._account(email).credits = credits

    def credits(self, email: str) -> float:
        """An account's live balance, as GET /accounts/{email} reports it."""
        return self._account(email).credits

    def advance(self, seconds: float) -> None:
        """Jump the simulated clock forward (e.g. past job retention); wakes waiting requests."""
        self.clock.advance(seconds)
        self.world.bell.ring()

    def _account(self, email: str) -> AccountState:
        acct = self.world.accounts.get(email)
        if acct is None:
            raise KeyError(f"no simulated account {email!r}")
        return acct
