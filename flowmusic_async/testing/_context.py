"""What a route handler gets: the world, the request, the caller's user id, path parameters."""

from __future__ import annotations

from dataclasses import dataclass

from ._faults import Dice
from ._media import MediaSigner
from ._state import World
from ._wire import Request


@dataclass
class Ctx:
    world: World
    media: MediaSigner
    req: Request
    uid: str
    params: dict[str, str]
    dice: Dice
