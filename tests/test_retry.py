"""The retry loop (Retrying/Attempt), its one sleep and testing switch, backoff, Retry-After."""

from __future__ import annotations

import gc
import itertools
import random
import time
import weakref
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import anyio
import pytest

from flowmusic_async._retry import (
    Attempt,
    Retrying,
    RetryPolicy,
    backoff_delays,
    parse_retry_after,
)
from flowmusic_async.testing import instant_retries, set_instant_retries


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The loop and its sleep hold on both of anyio's backends."""
    return str(request.param)


def test_backoff_yields_one_delay_less_than_tries() -> None:
    """max_tries counts attempts; one extra delay would mean one extra (maybe paid) attempt."""
    assert len(list(backoff_delays(base=0.1, cap=1, max_tries=5))) == 4
    assert list(backoff_delays(base=0.1, cap=1, max_tries=1)) == []


def test_backoff_is_exponential_capped_and_jittered() -> None:
    """Each delay lies in [0, min(cap, base*2^n)]; full jitter spreads clients apart."""
    random.seed(7)
    for _ in range(50):
        delays = list(backoff_delays(base=1, cap=5, max_tries=7))
        for n, delay in enumerate(delays):
            assert 0 <= delay <= min(5, 2**n)
    firsts = {round(next(backoff_delays(base=1, cap=5, max_tries=3)), 6) for _ in range(20)}
    assert len(firsts) > 1  # jittered, not a fixed schedule


def test_backoff_without_limit_runs_forever() -> None:
    """max_tries=None is for loops bounded by something else (a deadline)."""
    delays = list(itertools.islice(backoff_delays(base=0.01, cap=0.1, max_tries=None), 100))
    assert len(delays) == 100 and max(delays) <= 0.1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10", 10.0),
        ("0.25", 0.25),  # the simulator sends scaled decimals
        (" 3 ", 3.0),
        ("9999", 60.0),  # capped
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_delta_seconds(value: str | None, expected: float | None) -> None:
    """Retry-After decides how long a 429 waits; a bad header must not break or stall."""
    assert parse_retry_after(value, cap=60) == expected


def test_parse_retry_after_http_date() -> None:
    """Retry-After may be an HTTP date; it becomes the seconds until then."""
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = parse_retry_after(format_datetime(when, usegmt=True), cap=120)
    assert seconds is not None and 25 <= seconds <= 31
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert parse_retry_after(format_datetime(past, usegmt=True), cap=120) == 0


@pytest.mark.anyio
async def test_sleep_waits_through_anyio() -> None:
    """The library sleeps through anyio, so it respects the running loop's clock."""
    start = anyio.current_time()
    assert await RetryPolicy().sleep(0.01) is True
    assert anyio.current_time() - start >= 0.009


# ----- the loop: Retrying and Attempt ------------------------------------------------------------


@pytest.mark.anyio
async def test_the_first_attempt_comes_at_once_and_no_retry_ends_the_loop() -> None:
    """A body that schedules no retry (it succeeded, or its error is final) is the last one."""
    with instant_retries() as delays:
        retrying = RetryPolicy().retrying()
        numbers = [attempt.number async for attempt in retrying]
    assert numbers == [1] and delays == [] and retrying.retries == 0
    assert not retrying.stopped


@pytest.mark.anyio
async def test_ordinary_failures_get_max_retries_then_none() -> None:
    """max_retries counts retries after the first try; then retry() says give up."""
    answers: list[float | None] = []
    with instant_retries() as delays:
        retrying = RetryPolicy(max_retries=2, base=1, cap=8).retrying()
        async for attempt in retrying:
            answers.append(attempt.retry())
    assert answers[-1] is None and len(answers) == 3
    assert delays == answers[:2] and retrying.retries == 2
    assert 0 <= delays[0] <= 1 and 0 <= delays[1] <= 2  # exponential, full jitter


@pytest.mark.anyio
async def test_a_stop_set_during_the_sleep_ends_the_loop_at_once() -> None:
    """Closing must not wait out a 60 s backoff: the sleep ends when `stop` is set."""
    stop = anyio.Event()
    scheduled = anyio.Event()
    attempts: list[int] = []
    retrying = RetryPolicy(base=60, cap=60).retrying(stop=stop)

    async def loop() -> None:
        async for attempt in retrying:
            attempts.append(attempt.number)
            attempt.retry(retry_after=60)
            scheduled.set()

    started = anyio.current_time()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            await scheduled.wait()
            stop.set()
    assert anyio.current_time() - started < 5
    assert attempts == [1] and retrying.stopped


@pytest.mark.anyio
async def test_a_stop_set_before_a_retry_without_wait_ends_the_loop() -> None:
    """wait=False skips the sleep, not the stop: nothing further is tried once it is set."""
    stop = anyio.Event()
    attempts: list[int] = []
    retrying = RetryPolicy().retrying(stop=stop)
    async for attempt in retrying:
        attempts.append(attempt.number)
        attempt.retry(wait=False)
        stop.set()
    assert attempts == [1] and retrying.stopped


@pytest.mark.anyio
async def test_wait_false_returns_the_delay_but_the_next_attempt_comes_unslept() -> None:
    """A 429'd account can be held back for the delay while the job tries elsewhere at once."""
    returned: list[float | None] = []
    with instant_retries() as delays:
        async for attempt in RetryPolicy(max_retries=3).retrying():
            if attempt.number < 3:
                returned.append(attempt.retry(retry_after=7, wait=False))
    assert returned == [7, 7]
    assert delays == []  # nothing went through the sleep


@pytest.mark.anyio
async def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    """The server's word beats our schedule, but a confused server cannot park us for hours."""
    policy = RetryPolicy(max_retries=5, base=0.01, cap=0.02, retry_after_cap=60)
    with instant_retries() as delays:
        async for attempt in policy.retrying():
            if attempt.number == 1:
                attempt.retry(retry_after=3)
            elif attempt.number == 2:
                attempt.retry(retry_after=3600)
    assert delays == [3, 60]


def test_a_delay_ending_after_give_up_at_gives_up() -> None:
    """A caller bounded by a deadline gets None rather than a sleep past it."""
    policy = RetryPolicy()
    late = _first_attempt(policy.retrying(give_up_at=time.monotonic() + 5))
    assert late.retry(retry_after=10) is None
    in_time = _first_attempt(policy.retrying(give_up_at=time.monotonic() + 20))
    assert in_time.retry(retry_after=10) == 10


@pytest.mark.anyio
async def test_connection_failures_have_their_own_backoff_sequence() -> None:
    """A run of refused connections must not stretch the delay after the next 5xx."""
    random.seed(3)
    for _ in range(10):
        policy = RetryPolicy(base=1, cap=1000, connect_budget=10_000)
        policy.contact.note()
        with instant_retries() as delays:
            async for attempt in policy.retrying():
                if attempt.number <= 8:  # the connect sequence climbs to up to 2**7 s
                    attempt.retry(never_sent=True)
                elif attempt.number == 9:
                    attempt.retry()
        assert len(delays) == 9
        assert delays[-1] <= 1  # the first of its own sequence


def test_connection_failures_count_against_the_budget_not_max_retries() -> None:
    """max_retries=0 still retries a refused connection; a spent budget gives up at once."""
    policy = RetryPolicy(max_retries=0, connect_budget=30)
    policy.contact.note()
    attempt = _first_attempt(policy.retrying())
    assert attempt.retry(never_sent=True) is not None
    assert _first_attempt(policy.retrying()).retry() is None
    policy_gave_up = RetryPolicy()
    policy_gave_up.contact.give_up()  # an earlier request spent the first-contact budget
    assert _first_attempt(policy_gave_up.retrying()).retry(never_sent=True) is None


def test_an_attempt_schedules_at_most_one_retry() -> None:
    """Two retry() calls in one body are a bug in the body, said loudly."""
    attempt = _first_attempt(RetryPolicy().retrying())
    attempt.retry()
    with pytest.raises(RuntimeError, match="already scheduled"):
        attempt.retry()


@pytest.mark.anyio
@pytest.mark.parametrize("retries", [0, 2])
async def test_a_finished_loop_is_freed_without_the_cyclic_collector(retries: int) -> None:
    """Every request runs this loop: its state must go when the request ends, by reference
    counting alone. A cycle (the loop holding its attempt, the attempt its loop) left two
    objects, two generators and the stop event per request to the cyclic garbage collector,
    whose extra passes cost the client about 2 % of its CPU (docs/benchmarks.md)."""
    stop = anyio.Event()
    gc.collect()
    gc.disable()
    try:
        retrying = RetryPolicy().retrying(base=0.0, stop=stop)
        alive = weakref.ref(retrying)
        with instant_retries():
            async for attempt in retrying:
                if attempt.number <= retries:
                    attempt.retry()
                    continue
                break
        del retrying, attempt
        assert alive() is None
    finally:
        gc.enable()


def _first_attempt(retrying: Retrying) -> Attempt:
    """Attempt 1 without an event loop (the first __anext__ never awaits)."""
    step = retrying.__anext__()
    try:
        step.send(None)
    except StopIteration as done:
        attempt: Attempt = done.value
        return attempt
    raise AssertionError("the first attempt awaited something")


# ----- the testing switch ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_instant_retries_records_the_delays_and_restores_on_exit() -> None:
    """Tests assert the delays without waiting them; outside the block, sleeps are real again."""
    policy = RetryPolicy()
    with instant_retries() as outer:
        with instant_retries() as inner:
            assert await policy.sleep(3600) is True
        assert inner == [3600] and outer == []
        assert await policy.sleep(7200) is True
    assert outer == [7200]
    with anyio.move_on_after(0.05) as scope:
        await policy.sleep(3600)
    assert scope.cancelled_caught  # off again: a real sleep


@pytest.mark.anyio
async def test_set_instant_retries_turns_every_sleep_off_and_on() -> None:
    """The plain switch, for a whole session (stamina's set_testing)."""
    set_instant_retries(True)
    try:
        with anyio.fail_after(5):
            assert await RetryPolicy().sleep(3600) is True
    finally:
        set_instant_retries(False)
    with anyio.move_on_after(0.05) as scope:
        await RetryPolicy().sleep(3600)
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_sleep_with_stop_already_set_returns_false_at_once() -> None:
    """A closing client does not start a sleep it would only have to interrupt."""
    stop = anyio.Event()
    stop.set()
    with anyio.fail_after(5):
        assert await RetryPolicy().sleep(3600, stop=stop) is False
