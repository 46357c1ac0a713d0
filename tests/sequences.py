"""Drive the real pipeline and engine with value sequences (the replay loop, in memory)."""

from __future__ import annotations

from agent.alarm import Event
from agent.config import Config
from agent.replay import Replay, ReplayOptions


def run_sequence(
    config: Config, samples, value_kind: str = "level", unit: str = "m"
) -> list[Event]:
    """`samples`: iterable of (time_s, raw or None). Returns every event, in order."""
    events: list[Event] = []
    replay = Replay(config, ReplayOptions(value_kind=value_kind, unit=unit))
    replay.feed(samples, events.append)
    return events


def compact(events: list[Event], kinds=("level", "rate", "fault", "siren")) -> list[tuple]:
    """(time, kind, the one value that matters) for readable exact assertions."""
    out = []
    for event in events:
        if event.kind not in kinds:
            continue
        data = event.data
        value = {
            "level": lambda: data["state"],
            "siren": lambda: data["pattern"],
            "rate": lambda: data["active"],
            "fault": lambda: (data["fault"], data["active"]),
        }[event.kind]()
        out.append((event.time, event.kind, value))
    return out


def ramp(start_t: float, step_s: float, values) -> list[tuple[float, float | None]]:
    return [(start_t + i * step_s, value) for i, value in enumerate(values)]
