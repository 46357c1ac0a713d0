"""The replay picture a technician shows the dam manager: level, thresholds, states, siren.

Needs matplotlib (the `plot` extra); imported only when `replay --plot` is used.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from agent.config import Config
from agent.errors import GaugeError

STATE_COLOURS = ["#ffffff", "#ffe08a", "#ffb347", "#ff6b6b", "#d63384", "#8b0000", "#4b0000"]


def plot_replay(path: Path, config: Config, trace, counts, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise GaugeError("--plot needs matplotlib: pip install 'gauge-agent[plot]'") from None
    if not trace.times:
        raise GaugeError("--plot: the recording had no samples to draw")

    times = [dt.datetime.fromtimestamp(t, dt.timezone.utc) for t in trace.times]
    names = ["normal"] + config.level_names()
    figure, (level_axis, siren_axis) = plt.subplots(
        2, 1, figsize=(13, 7), sharex=True, gridspec_kw={"height_ratios": [6, 1]})

    # Warning state as background bands, one span per run of equal state.
    start = 0
    for i in range(1, len(times) + 1):
        if i == len(times) or trace.warning[i] != trace.warning[start]:
            state = trace.warning[start]
            if state > 0:
                end = times[i] if i < len(times) else times[-1]
                level_axis.axvspan(times[start], end, color=STATE_COLOURS[state], alpha=0.6,
                                   lw=0, label=f"warning: {names[state]}")
            start = i

    accepted = [(t, v) for t, v, ok in zip(times, trace.levels, trace.accepted) if ok]
    rejected = [(t, v) for t, v, ok in zip(times, trace.levels, trace.accepted)
                if not ok and v is not None]
    if accepted:
        level_axis.plot(*zip(*accepted), ".", ms=2, color="#7aa6c2", label="accepted reading")
    if rejected:
        level_axis.plot(*zip(*rejected), "x", ms=4, color="#c0392b", label="rejected by the plausibility gate")
    smoothed = [v for v in trace.smoothed]
    level_axis.plot(times, smoothed, "-", lw=1.4, color="#1f4e79", label="smoothed level")
    for index, level in enumerate(config.alarm.levels, start=1):
        level_axis.axhline(level.above_m, ls="--", lw=1, color=STATE_COLOURS[index],
                           path_effects=None)
        level_axis.annotate(f"{level.name} {level.above_m:.2f} m", (times[0], level.above_m),
                            xytext=(2, 2), textcoords="offset points", fontsize=8)
    handles, labels = level_axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    level_axis.legend(unique.values(), unique.keys(), loc="upper left", fontsize=8)
    level_axis.set_ylabel("level (m)")
    level_axis.set_title(f"{config.station.name} ({config.station.id}) - replay of {title}")
    level_axis.grid(alpha=0.3)

    siren_axis.fill_between(times, [1 if on else 0 for on in trace.siren], step="post",
                            color="#c0392b", lw=0)
    fault_times = [dt.datetime.fromtimestamp(e.time, dt.timezone.utc)
                   for e in trace.events if e.kind == "fault" and e.data["active"]]
    siren_axis.plot(fault_times, [0.5] * len(fault_times), "v", color="#e67e22", ms=6,
                    label="fault raised")
    siren_axis.set_yticks([0, 1], ["off", "siren"])
    siren_axis.set_ylim(-0.1, 1.1)
    if fault_times:
        siren_axis.legend(loc="upper left", fontsize=8)
    siren_axis.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d\n%H:%M"))
    siren_axis.set_xlabel(f"time (UTC); {counts.samples} samples, {counts.events} events")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as error:
        raise GaugeError(f"--plot: cannot write {path}: {error.strerror or error}") from None
    finally:
        plt.close(figure)
