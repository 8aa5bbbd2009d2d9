"""What the "model" writes: titles, lyrics and their timing, drawn from a seeded RNG."""

from __future__ import annotations

import random

_ADJECTIVES = (
    "Neon",
    "Velvet",
    "Golden",
    "Midnight",
    "Electric",
    "Quiet",
    "Broken",
    "Silver",
    "Wild",
    "Paper",
    "Crimson",
    "Endless",
    "Hollow",
    "Lucky",
    "Distant",
    "Sunlit",
)
_NOUNS = (
    "Highway",
    "Harbor",
    "Echo",
    "Garden",
    "Skyline",
    "River",
    "Signal",
    "Daydream",
    "Lantern",
    "Horizon",
    "Static",
    "Orchard",
    "Comet",
    "Mirror",
    "Tide",
    "Avenue",
)
_LINES = (
    "we ran through the city lights",
    "the radio hums our names",
    "hold on to the morning",
    "every road leads back to you",
    "dancing on the edge of time",
    "the rain keeps the rhythm",
    "we were never meant to fall",
    "singing till the stars go out",
    "shadows turning into gold",
    "your voice is the only sound",
    "count the waves along the shore",
    "nothing here is standing still",
)


def title(rng: random.Random) -> str:
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"


def lyrics(rng: random.Random) -> str:
    """Model-written lyrics in [Verse]/[Chorus] sections."""
    sections = []
    for tag in ("[Verse 1]", "[Chorus]", "[Verse 2]", "[Chorus]"):
        lines = [rng.choice(_LINES).capitalize() for _ in range(4)]
        sections.append("\n".join([tag, *lines]))
    return "\n\n".join(sections)


def lyrics_timing(text: str, duration_s: float) -> list[list[float]]:
    """[start_s, end_s] per sung line, spread evenly over the clip."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("[")]
    if not lines:
        return []
    step = duration_s / (len(lines) + 1)
    return [[round(step * (i + 0.5), 2), round(step * (i + 1.4), 2)] for i in range(len(lines))]


def sound_prompt(rng: random.Random, concept: str) -> str:
    mood = rng.choice(("uplifting", "melancholic", "driving", "dreamy", "gritty"))
    return f"{mood} {rng.choice(('indie pop', 'synthwave', 'folk', 'rock', 'r&b'))}, {concept[:60]}"
