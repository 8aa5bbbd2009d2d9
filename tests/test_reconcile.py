"""Client references in replyRef: composed with the caller's, found again after a lost answer."""

from __future__ import annotations

import pytest

from flowmusic_async._reconcile import compose_reply_ref, new_client_ref, split_reply_ref


def test_our_reference_survives_next_to_the_callers_own() -> None:
    """The caller's replyRef is kept intact and ours is recoverable from the echo."""
    ours = new_client_ref()
    assert split_reply_ref(compose_reply_ref(None, ours)) == (None, ours)
    assert split_reply_ref(compose_reply_ref("order-42|x", ours)) == ("order-42|x", ours)


@pytest.mark.parametrize("echo", [None, "", "someone else's ref", "fma-not-ours"])
def test_a_reply_ref_we_did_not_compose_never_matches(echo: str | None) -> None:
    """A foreign or missing replyRef must not be mistaken for one of our submissions."""
    assert split_reply_ref(echo)[1] is None


def test_references_are_unique() -> None:
    """Two submissions of the same prompt must stay distinguishable."""
    assert len({new_client_ref() for _ in range(1000)}) == 1000
