"""A Discord bot with a /song command: defer, generate, post the clip links; Cancel cancels.

Needs: discord.py (the `examples` extra), and two settings: DISCORD_TOKEN (your bot's token,
from Discord's developer portal) and USEAPI_TOKEN.

Discord wants an answer to a slash command within 3 s, and a song takes one to two and a half
minutes, so the command defers first (Discord shows "thinking..."), then posts a message with
a Cancel button while the song renders. One `FlowMusic` client serves every command: its
scheduler shares the accounts' slots between all the users at once, each server (guild) a
tenant of its own, so one busy server cannot make the others wait behind its queue, nor
spend more than its budget of credits; and its one poller watches every song.

Run it, from a checkout (the package is not on PyPI yet):

    python3 -m pip install -e ".[examples]"
    USEAPI_TOKEN=... DISCORD_TOKEN=... python examples/discord_bot.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import discord
from discord import app_commands

from flowmusic_async import (
    BudgetExceeded,
    FlowMusic,
    FlowMusicError,
    JobFailed,
    JobHandle,
    JobTimeout,
)

# What each server (or DM user) may spend per run of the bot, in credits; a song costs about
# 10. One busy server cannot use up the accounts' balance for everyone else.
CREDITS_PER_SERVER = 200.0


class CancelView(discord.ui.View):
    """The Cancel button under a song in progress; only the user who asked may press it."""

    def __init__(self, handle: JobHandle, owner_id: int) -> None:
        super().__init__(timeout=None)
        self.handle = handle
        self.owner_id = owner_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.owner_id

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.danger)
    async def cancel(
        self, interaction: discord.Interaction, button: discord.ui.Button[CancelView]
    ) -> None:
        button.disabled = True
        await interaction.response.edit_message(content="Cancelling...", view=self)
        # DELETE /jobs/{jobid}: the slot is freed, and the command below sees JobFailed.
        await self.handle.cancel()


def tenant_of(interaction: discord.Interaction) -> str:
    """Whose song it is, for fair shares of the slots: the server, or the user in a DM."""
    if interaction.guild_id is not None:
        return f"guild:{interaction.guild_id}"
    return f"user:{interaction.user.id}"


def song_command(fm: FlowMusic) -> app_commands.Command[Any, ..., None]:
    """The /song slash command, bound to an open client."""

    @app_commands.command(name="song", description="Write a song from a prompt")
    @app_commands.describe(prompt="genre, mood, instruments, vocals...")
    async def song(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        try:
            # Returns once the job is accepted; waits first if every slot is busy, taking
            # turns with the other servers' songs.
            handle = await fm.submit(prompt, tenant=tenant_of(interaction))
        except BudgetExceeded as error:  # refused before anything was sent: nothing paid
            await interaction.followup.send(
                f"This server has used its budget for now ({error.limit:g} credits)."
            )
            return
        except FlowMusicError as error:  # e.g. ValidationError, ModeratedError (422)
            await interaction.followup.send(f"Could not start that song: {error}")
            return
        view = CancelView(handle, interaction.user.id)
        message = await interaction.followup.send(
            f"Writing your song (job `{handle.jobid}`)...", view=view, wait=True
        )
        try:
            job = await handle
        except JobFailed as error:
            text = "Cancelled." if error.code == "user_cancelled" else f"That failed: {error}"
        except JobTimeout:
            text = f"Still running; ask again later for `{handle.jobid}`."
        else:
            links = [
                f"**{clip.title}** ({clip.duration_s:.0f} s): {clip.audio_url}"
                for clip in job.clips
            ]
            text = "\n".join(links)
        finally:
            view.stop()
        await message.edit(content=text, view=None)

    return song


class SongBot(discord.Client):
    def __init__(self, fm: FlowMusic) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(song_command(fm))

    async def setup_hook(self) -> None:
        await self.tree.sync()  # register /song with Discord


def settings() -> dict[str, str]:
    """DISCORD_TOKEN and USEAPI_TOKEN from the environment; a missing one ends the program
    with a one-line message naming it."""
    names = ("DISCORD_TOKEN", "USEAPI_TOKEN")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"discord_bot.py: set {' and '.join(missing)} (see the top of this file)")
    return {name: os.environ[name] for name in names}


async def main(discord_token: str) -> None:
    # USEAPI_TOKEN from the environment; every server's songs count against its own budget.
    async with FlowMusic(tenant_spend_limit=CREDITS_PER_SERVER) as fm, SongBot(fm) as bot:
        await bot.start(discord_token)


if __name__ == "__main__":
    asyncio.run(main(settings()["DISCORD_TOKEN"]))  # discord.py runs on asyncio only
