"""`gauge-agent calibrate`: set the calibration against the dam's staff gauge, see it, see its
history, undo the last change. The running daemon takes a new calibration without a restart
(it is asked over its control socket) and reports the change upstream as an event."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path

from agent.calibration import (
    LARGE_CHANGE_M,
    CalibrationFiles,
    CalibrationRefused,
    Readings,
    level_of,
    offset_from_staff_gauge,
    span_from_points,
)
from agent.commands.common import (
    ask_daemon,
    confirm,
    daemon_error,
    default_config_path,
    live_samples,
    whole_number,
)
from agent.config import CalibrationConfig, Config, load_config
from agent.errors import EXIT_FAILURE, EXIT_OK, GaugeError
from agent.i18n import N_, _
from agent.stability import STABLE_READINGS, LevelStats

NAME = "calibrate"
HELP = N_("calibration against the staff gauge: offset, point, span, show, history, undo")
SETTLE_SAMPLES = 3  # samples allowed per reading needed before giving up on stability


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=_("the gauge's configuration file"))
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    offset = actions.add_parser(
        "offset",
        help=_("read the staff gauge, take stable readings, set the elevation or offset"),
    )
    point = actions.add_parser(
        "point",
        help=_("pressure transmitters: record a point (staff gauge and depth) for span"),
    )
    for action in (offset, point):
        action.add_argument(
            "--staff-gauge",
            type=_level,
            required=True,
            metavar="LEVEL",
            help=_("the level read on the staff gauge now, in metres of the site's datum"),
        )
        action.add_argument(
            "--readings",
            type=whole_number(
                STABLE_READINGS,
                1000,
                _("{text!r} must be a whole number from {low} to {high}"),
            ),
            default=STABLE_READINGS,
            metavar="N",
            help=_("stable readings to average (default {count})").format(count=STABLE_READINGS),
        )
    offset.add_argument("--yes", action="store_true", help=_("write without asking"))
    span = actions.add_parser(
        "span",
        help=_("pressure transmitters: offset and scale through the last two points"),
    )
    span.add_argument("--yes", action="store_true", help=_("write without asking"))
    actions.add_parser("show", help=_("the calibration in use, and its last change"))
    actions.add_parser("history", help=_("every change: when, who, old and new, from what"))
    undo = actions.add_parser("undo", help=_("go back to the calibration before the last change"))
    undo.add_argument("--yes", action="store_true", help=_("write without asking"))


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not -500 <= value <= 9000:
        raise argparse.ArgumentTypeError(
            _("{text!r} must be a level in metres, e.g. 7.85").format(text=text)
        )
    return value


def execute(args: argparse.Namespace) -> int:
    path = args.config if args.config is not None else default_config_path()
    if not path.exists():
        raise GaugeError(
            _(
                "calibrate keeps calibration.toml beside the configuration file, and {path}"
                " does not exist: give --config PATH"
            ).format(path=path)
        )
    config = load_config(path)
    files = CalibrationFiles(path)
    if args.action == "show":
        return _show(config, files)
    if args.action == "history":
        return _history(files)
    if args.action == "undo":
        return _undo(config, files, args.yes)
    if args.action == "point":
        return _point(config, files, args.staff_gauge, args.readings)
    if args.action == "span":
        return _span(config, files, args.yes)
    return _offset(config, files, args.staff_gauge, args.readings, args.yes)


def _point(config: Config, files: CalibrationFiles, staff_m: float, needed: int) -> int:
    readings = take_readings(config, needed)
    if readings.kind != "depth":
        raise CalibrationRefused(
            _("point and span are for pressure transmitters; a ranger needs only `offset`")
        )
    files.record_point({"staff_gauge_m": staff_m, "readings": asdict(readings)}, time.time())
    points = files.points_since_last_change()
    print(
        _("point {number} recorded: staff gauge {staff:.3f} m, depth {depth:.4f} m").format(
            number=len(points), staff=staff_m, depth=readings.mean_m
        )
    )
    if len(points) < 2:
        print(_("take a second point when the water is at another level, then `calibrate span`"))
    return EXIT_OK


def _span(config: Config, files: CalibrationFiles, yes: bool) -> int:
    points = files.points_since_last_change()
    if len(points) < 2:
        raise GaugeError(
            _("span needs two points since the last change; there are {count}").format(
                count=len(points)
            )
        )
    first, second = points[-2], points[-1]
    current = config.calibration
    new = span_from_points(
        current,
        {"staff_gauge_m": first["staff_gauge_m"], "mean_m": first["readings"]["mean_m"]},
        {"staff_gauge_m": second["staff_gauge_m"], "mean_m": second["readings"]["mean_m"]},
    )
    for entry in (first, second):
        print(
            _("  point of {time}: staff gauge {staff} m, depth {depth} m").format(
                time=entry["time"], staff=entry["staff_gauge_m"], depth=entry["readings"]["mean_m"]
            )
        )
    if not _print_change(current, new):
        print(_("the calibration already agrees with the staff gauge: nothing to write"))
        return EXIT_OK
    if not confirm(_("Write this calibration?"), yes):
        print(_("nothing written"))
        return EXIT_FAILURE
    files.write(current, new, "span", {"points": [first["time"], second["time"]]}, time.time())
    print(_("written: {path}").format(path=files.path))
    _tell_daemon(config)
    return EXIT_OK


def _offset(config: Config, files: CalibrationFiles, staff_m: float, needed: int, yes: bool) -> int:
    readings = take_readings(config, needed)
    current = config.calibration
    new = offset_from_staff_gauge(current, readings, staff_m)
    used = (
        _(
            "readings used: {count}, mean distance {mean:.4f} m, sd {sd:.1f} cm"
            " (from {low:.3f} to {high:.3f} m)"
        )
        if readings.kind == "distance"
        else _(
            "readings used: {count}, mean depth {mean:.4f} m, sd {sd:.1f} cm"
            " (from {low:.3f} to {high:.3f} m)"
        )
    )
    print(
        used.format(
            count=readings.count,
            mean=readings.mean_m,
            sd=readings.sd_m * 100,
            low=readings.low_m,
            high=readings.high_m,
        )
    )
    shown = level_of(current, readings)
    print(
        _("the gauge shows {shown:.3f} m now; the staff gauge {staff:.3f} m").format(
            shown=shown, staff=staff_m
        )
    )
    changed = _print_change(current, new)
    if not changed:
        print(_("the calibration already agrees with the staff gauge: nothing to write"))
        return EXIT_OK
    if not confirm(_("Write this calibration?"), yes):
        print(_("nothing written"))
        return EXIT_FAILURE
    files.write(
        current,
        new,
        "offset",
        {"staff_gauge_m": staff_m, "readings": asdict(readings)},
        time.time(),
    )
    print(
        _("written: {path} (the version before: {previous})").format(
            path=files.path, previous=files.previous.name
        )
    )
    _tell_daemon(config)
    return EXIT_OK


def take_readings(config: Config, needed: int) -> Readings:
    """`needed` plausible readings whose last STABLE_READINGS agree within 1 cm, from the
    daemon or the sensor; refused if they do not settle within SETTLE_SAMPLES times as many."""
    samples, source = live_samples(config, needed * SETTLE_SAMPLES)
    print(_("taking {count} stable readings from {source}").format(count=needed, source=source))
    stats = LevelStats()
    values: list[float] = []
    kind = "distance"
    for sample in samples:
        kind = "distance" if "distance_m" in sample else "depth"
        value = sample.get(f"{kind}_m")
        if not sample["ok"] or value is None:
            print("  " + _("not used: {reason}").format(reason=sample["reason"]), flush=True)
            continue
        values.append(value)
        stats.add(value)
        label = _("distance") if kind == "distance" else _("depth")
        print(f"  {len(values):3d}  {label} {value:.4f} m  {stats.verdict()}", flush=True)
        if len(values) >= needed and stats.stable:
            recent = values[-needed:]
            mean = sum(recent) / needed
            sd = math.sqrt(sum((v - mean) ** 2 for v in recent) / (needed - 1))
            return Readings(kind, needed, round(mean, 5), round(sd, 5), min(recent), max(recent))
    raise CalibrationRefused(
        _(
            "the readings did not settle ({verdict}): nothing written. Look at the sensor with"
            " `gauge-agent read` (an object in the beam, waves, a loose mount) and try again"
        ).format(verdict=stats.verdict())
    )


def _print_change(old: CalibrationConfig, new: CalibrationConfig) -> bool:
    changed = False
    for name, before in asdict(old).items():
        after = getattr(new, name)
        if after != before:
            changed = True
            print(f"  {name}: {before} -> {after} ({after - before:+.4f})")
            if abs(after - before) > LARGE_CHANGE_M and name != "scale":
                print(
                    "  "
                    + _(
                        "WARNING: a change of more than {limit:g} m; is the staff gauge value"
                        " right, and in metres of the site's datum?"
                    ).format(limit=LARGE_CHANGE_M)
                )
    return changed


def _tell_daemon(config: Config) -> None:
    try:
        answer = ask_daemon(config, {"command": "reload"})
    except GaugeError as error:
        print(_("{error}; then: sudo systemctl reload gauge-agent").format(error=error))
        return
    if answer is None:
        print(_("no daemon running: it uses the new calibration when it starts"))
    elif answer.get("ok"):
        print(_("the running daemon is applying it now (no restart)"))
    else:
        print(_("the daemon did not take it: {error}").format(error=daemon_error(answer)))


def _show(config: Config, files: CalibrationFiles) -> int:
    history = files.history()
    source = (
        str(files.path) if files.path.exists() else _("the configuration file (never calibrated)")
    )
    print(_("calibration in use (from {source}):").format(source=source))
    for name, value in asdict(config.calibration).items():
        print(f"  {name} = {value}")
    if history:
        last = history[-1]
        print(
            _("last change: {time} by {user} ({action})").format(
                time=last.get("time"), user=last.get("user"), action=last.get("action")
            )
        )
    return EXIT_OK


def _history(files: CalibrationFiles) -> int:
    history = files.history()
    if not history:
        print(
            _("no calibration changes recorded ({path} does not exist yet)").format(
                path=files.history_path
            )
        )
        return EXIT_OK
    for entry in history:
        print(_history_line(entry))
    return EXIT_OK


def _history_line(entry: dict) -> str:
    if "damaged_line" in entry:
        return f"(line {entry['damaged_line']} of the history cannot be read)"
    old, new = entry.get("old") or {}, entry.get("new") or {}
    changes = ", ".join(
        f"{name} {old.get(name)} -> {new.get(name)}"
        for name in new
        if new.get(name) != old.get(name)
    )
    who = f"{entry.get('time')}  {entry.get('user')}  {entry.get('action')}"
    if entry.get("action") == "point":
        changes = "(" + _("a point for span, no change yet") + ")"
    line = f"{who}  {changes or _('no change')}"
    readings = entry.get("readings")
    if isinstance(readings, dict) and "staff_gauge_m" in entry:
        line += (
            f"  (staff gauge {entry['staff_gauge_m']} m, {readings.get('count')} readings,"
            f" sd {100 * (readings.get('sd_m') or 0):.1f} cm)"
        )
    return line


def _undo(config: Config, files: CalibrationFiles, yes: bool) -> int:
    history = [entry for entry in files.history() if "old" in entry]
    if not history:
        raise GaugeError(_("there is no calibration change to undo"))
    last = history[-1]
    try:
        restored = CalibrationConfig(**last["old"])
    except TypeError:
        raise GaugeError(_("the last history entry cannot be read back; edit the file")) from None
    print(
        _("undo the change of {time} by {user} ({action}):").format(
            time=last.get("time"), user=last.get("user"), action=last.get("action")
        )
    )
    if not _print_change(config.calibration, restored):
        print(_("the calibration in use is already that: nothing to write"))
        return EXIT_OK
    if not confirm(_("Write this calibration?"), yes):
        print(_("nothing written"))
        return EXIT_FAILURE
    files.write(config.calibration, restored, "undo", {"undoes": last.get("time")}, time.time())
    print(_("written: {path}").format(path=files.path))
    _tell_daemon(config)
    return EXIT_OK
