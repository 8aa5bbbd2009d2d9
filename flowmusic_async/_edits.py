"""Typed helpers for the POST /music/edit operations: effect, extend, replace, cover, remix.

Each helper spells out its operation's parameters (contract 8.8) so editors and type
checkers can help, then calls the generic ``edit``; validation and sending happen there.
Mixed into `Music`, kept apart so the namespace module stays short.
"""

from __future__ import annotations

from typing import Any

from ._models import Job

__all__ = ["EditHelpers"]


class EditHelpers:
    """The per-operation shortcuts of ``fm.music``; needs an ``edit`` method to call."""

    async def edit(
        self,
        operation: str,
        clip: str,
        *,
        seed: int | None = None,
        title: str | None = None,
        mode: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: str | None = None,
        **op_params: Any,
    ) -> Job:
        raise NotImplementedError  # provided by Music

    async def effect(
        self,
        clip: str,
        effect: str,
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
        mode: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
    ) -> Job:
        """Apply one effect (Trim, Fade, Gain, Reverb, Pan, Equalizer) with its own parameters."""
        return await self.edit(
            "effect",
            clip,
            seed=seed,
            title=title,
            mode=mode,
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
        mode: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: str | None = None,
    ) -> Job:
        """Append ``extend_s`` seconds (1-300, server default 150) after the clip or a time."""
        return await self.edit(
            "extend",
            clip,
            seed=seed,
            title=title,
            mode=mode,
            reply_url=reply_url,
            reply_ref=reply_ref,
            model=model,
            instruction=instruction,
            extend_s=extend_s,
            extend_from_s=extend_from_s,
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
        mode: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: str | None = None,
    ) -> Job:
        """Regenerate the window ``[mask_start_s, mask_end_s)`` as ``instruction`` says."""
        return await self.edit(
            "replace",
            clip,
            seed=seed,
            title=title,
            mode=mode,
            reply_url=reply_url,
            reply_ref=reply_ref,
            model=model,
            instruction=instruction,
            mask_start_s=mask_start_s,
            mask_end_s=mask_end_s,
        )

    async def cover(
        self,
        clip: str,
        *,
        instruction: str | None = None,
        strength: float | None = None,
        seed: int | None = None,
        title: str | None = None,
        mode: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: str | None = None,
    ) -> Job:
        """Re-render the whole clip in another style; ``strength`` 0-1 (1 = furthest)."""
        return await self.edit(
            "cover",
            clip,
            seed=seed,
            title=title,
            mode=mode,
            reply_url=reply_url,
            reply_ref=reply_ref,
            model=model,
            instruction=instruction,
            strength=strength,
        )

    async def remix(
        self,
        clip: str,
        lyrics: str,
        *,
        prompt: str | None = None,
        seed: int | None = None,
        title: str | None = None,
        mode: str | None = None,
        reply_url: str | None = None,
        reply_ref: str | None = None,
        model: str | None = None,
    ) -> Job:
        """Sing the clip again with new ``lyrics``, optionally with a new sound ``prompt``."""
        return await self.edit(
            "remix",
            clip,
            seed=seed,
            title=title,
            mode=mode,
            reply_url=reply_url,
            reply_ref=reply_ref,
            model=model,
            lyrics=lyrics,
            prompt=prompt,
        )
