"""`gauge-agent read`: live samples for the technician, with running figures and whether the
reading is stable. From the running daemon over its control socket (it owns the sensor), or,
when no daemon runs (first commissioning), from the sensor opened here through the same
driver and pipeline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent import control
from agent.commands.common import live_samples, load_or_default, whole_number
from agent.errors import EXIT_OK
from agent.i18n import N_, _
from agent.stability import STABLE_READINGS, LevelStats

NAME = "read"
HELP = N_("live samples: raw, temperature, distance or depth, level, and whether it is stable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path)
    parser.add_argument(
        "--count",
        type=whole_number(
            1, control.READ_MAX_COUNT, _("{text!r} must be a whole number from {low} to {high}")
        ),
        default=STABLE_READINGS,
        metavar="N",
        help=_("how many samples (default {count}, enough to tell whether it is stable)").format(
            count=STABLE_READINGS
        ),
    )
    parser.add_argument("--json", action="store_true", help=_("one JSON object per sample"))


def execute(args: argparse.Namespace) -> int:
    config = load_or_default(args.config)
    samples, source = live_samples(config, args.count)
    stats = LevelStats()
    if not args.json:
        heading = _("reading {count} samples from {source}")
        print(heading.format(count=args.count, source=source), flush=True)
    for sample in samples:
        if sample["ok"] and sample["level_m"] is not None:
            stats.add(sample["level_m"])
        if args.json:
            print(json.dumps(sample), flush=True)
        else:
            print(_line(sample, stats), flush=True)
    if not args.json:
        print(_summary(stats))
    return EXIT_OK


def _metres(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} m"


def _line(sample: dict, stats: LevelStats) -> str:
    clock = sample["time"][11:19]
    raw = "-" if sample["raw"] is None else f"{sample['raw']:g} {sample['raw_unit']}"
    parts = [clock, _("raw {value}").format(value=raw)]
    if sample.get("temperature_c") is not None:
        parts.append(_("temp {value:.1f} C").format(value=sample["temperature_c"]))
    if "distance_m" in sample:
        parts.append(_("distance {value}").format(value=_metres(sample["distance_m"])))
    else:
        parts.append(_("depth {value}").format(value=_metres(sample.get("depth_m"))))
    parts.append(_("level {value}").format(value=_metres(sample["level_m"])))
    if sample["ok"]:
        parts.append(_("smoothed {value}").format(value=_metres(sample["smoothed_m"])))
    else:
        parts.append(_("not used: {reason}").format(reason=sample["reason"]))
    if stats.count:
        parts.append(
            _("| mean {mean:.3f} sd {sd:.1f} cm n {count}").format(
                mean=stats.mean, sd=stats.sd * 100, count=stats.count
            )
        )
    return "  ".join(parts)


def _summary(stats: LevelStats) -> str:
    if not stats.count:
        return _("no plausible reading: not stable (look at the reasons above)")
    return _("level {mean:.3f} m, mean of {count}: {verdict}").format(
        mean=stats.mean, count=stats.count, verdict=stats.verdict()
    )
