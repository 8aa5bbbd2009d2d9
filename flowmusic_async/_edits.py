"""Typed helpers for the POST /music/edit operations: effect, extend, replace, cover, remix.

Each helper spells out its operation's parameters (contract 8.8) so editors and type
checkers can help, builds the `EditRequest` and hands it to ``_run_edit``; validation and
sending happen there.

`EditHelpers` is mixed into `Music` (one request, sync by default); `JobEditHelpers` into
`FlowMusic` (through the engine: slots, polling, cancellation). Every keyword is a field of
`EditRequest` (``tests/test_requests.py`` keeps them equal).
"""

from __future__ import annotations

from ._models import Job
from ._requests import EditRequest, EffectName, Mode, Model

__all__ = ["EditHelpers", "JobEditHelpers"]


class EditHelpers:
    """The per-operation shortcuts of ``fm.music``; `Music` provides ``_run_edit``."""

    async def _run_edit(self, request: EditRequest, *, mode: Mode | None) -> Job:
        raise NotImplementedError  # provided by Music

    async def effect(
        self,
        clip: str,
        effect: EffectName,
        *,
        start_s: float | None = None,
        end_s: float | None = None,
        fade_in_s: float | None = None,
        fade_out_s: float | None = None,
        gain_db: float | None = None,
        mix: float | None = None,
        room_size: float | None = None,
        pan: float | None = None,
        bass_db: float | None = None,
        mid_db: float | None = None,
        treble_db: float | None = None,
        seed: int | None = None,
        title: str | None = None,
        mode: Mode | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
    ) -> Job:
        """Apply one effect (Trim, Fade, Gain, Reverb, Pan, Equalizer) with its own parameters."""
        return await self._run_edit(
            EditRequest(
                operation="effect",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                effect=effect,
                start_s=start_s,
                end_s=end_s,
                fade_in_s=fade_in_s,
                fade_out_s=fade_out_s,
                gain_db=gain_db,
                mix=mix,
                room_size=room_size,
                pan=pan,
                bass_db=bass_db,
                mid_db=mid_db,
                treble_db=treble_db,
            ),
            mode=mode,
        )

    async def extend(
        self,
        clip: str,
        instruction: str,
        *,
        extend_s: float | None = None,
        extend_from_s: float | None = None,
        seed: int | None = None,
        title: str | None = None,
        mode: Mode | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
    ) -> Job:
        """Append ``extend_s`` seconds (1-300, server default 150) after the clip or a time."""
        return await self._run_edit(
            EditRequest(
                operation="extend",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                instruction=instruction,
                extend_s=extend_s,
                extend_from_s=extend_from_s,
            ),
            mode=mode,
        )

    async def replace(
        self,
        clip: str,
        instruction: str,
        *,
        mask_start_s: float,
        mask_end_s: float,
        seed: int | None = None,
        title: str | None = None,
        mode: Mode | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
    ) -> Job:
        """Regenerate the window ``[mask_start_s, mask_end_s)`` as ``instruction`` says."""
        return await self._run_edit(
            EditRequest(
                operation="replace",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                instruction=instruction,
                mask_start_s=mask_start_s,
                mask_end_s=mask_end_s,
            ),
            mode=mode,
        )

    async def cover(
        self,
        clip: str,
        *,
        instruction: str | None = None,
        strength: float | None = None,
        seed: int | None = None,
        title: str | None = None,
        mode: Mode | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
    ) -> Job:
        """Re-render the whole clip in another style; ``strength`` 0-1 (1 = furthest)."""
        return await self._run_edit(
            EditRequest(
                operation="cover",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                instruction=instruction,
                strength=strength,
            ),
            mode=mode,
        )

    async def remix(
        self,
        clip: str,
        lyrics: str,
        *,
        prompt: str | None = None,
        seed: int | None = None,
        title: str | None = None,
        mode: Mode | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
    ) -> Job:
        """Sing the clip again with new ``lyrics``, optionally with a new sound ``prompt``."""
        return await self._run_edit(
            EditRequest(
                operation="remix",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                lyrics=lyrics,
                prompt=prompt,
            ),
            mode=mode,
        )


class JobEditHelpers:
    """The per-operation shortcuts of `FlowMusic`: each runs its edit to the end like `edit`.

    Submitted in async mode on the clip's account, awaited through the poller; cancelling the
    caller cancels the job server-side. ``deadline`` counts from acceptance.
    """

    async def _run_edit(self, request: EditRequest, *, deadline: float | None) -> Job:
        raise NotImplementedError  # provided by FlowMusic

    async def effect(
        self,
        clip: str,
        effect: EffectName,
        *,
        start_s: float | None = None,
        end_s: float | None = None,
        fade_in_s: float | None = None,
        fade_out_s: float | None = None,
        gain_db: float | None = None,
        mix: float | None = None,
        room_size: float | None = None,
        pan: float | None = None,
        bass_db: float | None = None,
        mid_db: float | None = None,
        treble_db: float | None = None,
        seed: int | None = None,
        title: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        deadline: float | None = None,
    ) -> Job:
        """Apply one effect (Trim, Fade, Gain, Reverb, Pan, Equalizer) with its own parameters."""
        return await self._run_edit(
            EditRequest(
                operation="effect",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                effect=effect,
                start_s=start_s,
                end_s=end_s,
                fade_in_s=fade_in_s,
                fade_out_s=fade_out_s,
                gain_db=gain_db,
                mix=mix,
                room_size=room_size,
                pan=pan,
                bass_db=bass_db,
                mid_db=mid_db,
                treble_db=treble_db,
            ),
            deadline=deadline,
        )

    async def extend(
        self,
        clip: str,
        instruction: str,
        *,
        extend_s: float | None = None,
        extend_from_s: float | None = None,
        seed: int | None = None,
        title: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
        deadline: float | None = None,
    ) -> Job:
        """Append ``extend_s`` seconds (1-300, server default 150) after the clip or a time."""
        return await self._run_edit(
            EditRequest(
                operation="extend",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                instruction=instruction,
                extend_s=extend_s,
                extend_from_s=extend_from_s,
            ),
            deadline=deadline,
        )

    async def replace(
        self,
        clip: str,
        instruction: str,
        *,
        mask_start_s: float,
        mask_end_s: float,
        seed: int | None = None,
        title: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
        deadline: float | None = None,
    ) -> Job:
        """Regenerate the window ``[mask_start_s, mask_end_s)`` as ``instruction`` says."""
        return await self._run_edit(
            EditRequest(
                operation="replace",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                instruction=instruction,
                mask_start_s=mask_start_s,
                mask_end_s=mask_end_s,
            ),
            deadline=deadline,
        )

    async def cover(
        self,
        clip: str,
        *,
        instruction: str | None = None,
        strength: float | None = None,
        seed: int | None = None,
        title: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
        deadline: float | None = None,
    ) -> Job:
        """Re-render the whole clip in another style; ``strength`` 0-1 (1 = furthest)."""
        return await self._run_edit(
            EditRequest(
                operation="cover",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                instruction=instruction,
                strength=strength,
            ),
            deadline=deadline,
        )

    async def remix(
        self,
        clip: str,
        lyrics: str,
        *,
        prompt: str | None = None,
        seed: int | None = None,
        title: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: Model | None = None,
        deadline: float | None = None,
    ) -> Job:
        """Sing the clip again with new ``lyrics``, optionally with a new sound ``prompt``."""
        return await self._run_edit(
            EditRequest(
                operation="remix",
                clip=clip,
                seed=seed,
                title=title,
                reply_url=reply_url,
                reply_ref=reply_ref,
                model=model,
                lyrics=lyrics,
                prompt=prompt,
            ),
            deadline=deadline,
        )
