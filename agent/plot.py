"""The replay picture a technician shows the dam manager: level, thresholds, states, siren.

Needs matplotlib (the `plot` extra); imported only when `replay --plot` is used.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from agent.config import Config
from agent.errors import GaugeError
from agent.i18n import _

STATE_COLOURS = ["#ffffff", "#ffe08a", "#ffb347", "#ff6b6b", "#d63384", "#8b0000", "#4b0000"]


def plot_replay(path: Path, config: Config, trace, counts, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise GaugeError(_("--plot needs matplotlib: pip install 'gauge-agent[plot]'")) from None
    if not trace.times:
        raise GaugeError(_("--plot: the recording had no samples to draw"))

    times = [dt.datetime.fromtimestamp(t, dt.UTC) for t in trace.times]
    names = ["normal"] + config.level_names()
    figure, (level_axis, siren_axis) = plt.subplots(
        2, 1, figsize=(13, 7), sharex=True, gridspec_kw={"height_ratios": [6, 1]}
    )

    # Warning state as background bands, one span per run of equal state.
    start = 0
    for i in range(1, len(times) + 1):
        if i == len(times) or trace.warning[i] != trace.warning[start]:
            state = trace.warning[start]
            if state > 0:
                end = times[i] if i < len(times) else times[-1]
                level_axis.axvspan(
                    times[start],
                    end,
                    color=STATE_COLOURS[state],
                    alpha=0.6,
                    lw=0,
                    label=f"warning: {names[state]}",
                )
            start = i

    # Each reading once, by what the gate finally made of it, so a technician tuning a site
    # can see why a reading was not believed.
    kinds: dict[str, list] = {
        "accepted": [],
        "withdrawn": [],
        "unconfirmed": [],
        "false_echo": [],
        "implausible": [],
    }
    for t, v, ok, reason, withdrawn in zip(
        times, trace.levels, trace.accepted, trace.reasons, trace.withdrawn
    ):
        if v is None:
            continue
        if withdrawn:
            kinds["withdrawn"].append((t, v))
        elif ok:
            kinds["accepted"].append((t, v))
        elif reason in kinds:
            kinds[reason].append((t, v))
    styles = {
        "accepted": (".", 2, "#7aa6c2", "accepted reading"),
        "withdrawn": ("o", 3, "#8e44ad", "believed at first, withdrawn (not the water)"),
        "unconfirmed": ("^", 4, "#16a085", "jump across a silence, not confirmed"),
        "false_echo": ("s", 3, "#7f8c8d", "at a learned false echo"),
        "implausible": ("x", 4, "#c0392b", "refused: faster than the site allows"),
    }
    for kind, points in kinds.items():
        if points:
            marker, size, colour, label = styles[kind]
            level_axis.plot(*zip(*points), marker, ls="none", ms=size, color=colour, label=label)
    for echo in getattr(trace, "false_echoes", []):
        level_axis.axhline(echo, ls=":", lw=1, color="#7f8c8d")
        level_axis.annotate(
            f"false echo {echo:.2f} m",
            (times[-1], echo),
            xytext=(-4, 2),
            textcoords="offset points",
            fontsize=7,
            ha="right",
            color="#555555",
        )
    smoothed = [v for v in trace.smoothed]
    level_axis.plot(times, smoothed, "-", lw=1.4, color="#1f4e79", label="smoothed level")
    for index, level in enumerate(config.alarm.levels, start=1):
        level_axis.axhline(
            level.above_m, ls="--", lw=1, color=STATE_COLOURS[index], path_effects=None
        )
        level_axis.annotate(
            f"{level.name} {level.above_m:.2f} m",
            (times[0], level.above_m),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=8,
        )
    handles, labels = level_axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    level_axis.legend(unique.values(), unique.keys(), loc="upper left", fontsize=8)
    level_axis.set_ylabel("level (m)")
    level_axis.set_title(f"{config.station.name} ({config.station.id}) - replay of {title}")
    level_axis.grid(alpha=0.3)

    siren_axis.fill_between(
        times, [1 if on else 0 for on in trace.siren], step="post", color="#c0392b", lw=0
    )
    fault_times = [
        dt.datetime.fromtimestamp(e.time, dt.UTC)
        for e in trace.events
        if e.kind == "fault" and e.data["active"]
    ]
    siren_axis.plot(
        fault_times, [0.5] * len(fault_times), "v", color="#e67e22", ms=6, label="fault raised"
    )
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
        raise GaugeError(
            "--plot: "
            + _("cannot write {path}: {reason}").format(path=path, reason=error.strerror or error)
        ) from None
    finally:
        plt.close(figure)
