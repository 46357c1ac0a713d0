"""Calibration against the dam's staff gauge: what to write, and writing it safely.

Every later reading and every warning depends on these numbers, so a change is computed from a
stable set of readings, refused when it is physically impossible, written so that a power cut
at any moment leaves either the old file or the new one (temporary file, fsync, rename, fsync
of the directory), and kept: the version before is `calibration.toml.previous`, and every
change is a line in the append-only `calibration-history.jsonl` (time, Unix user, old, new, the
readings it was computed from).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.config import CALIBRATION_FILE_NAME, CalibrationConfig
from agent.errors import GaugeError
from agent.files import read_small_file
from agent.i18n import _

HISTORY_FILE_NAME = "calibration-history.jsonl"
PREVIOUS_SUFFIX = ".previous"
SUBMERGED_MIN_M = 0.05  # a pressure transmitter reading less water than this is not in it
LARGE_CHANGE_M = 1.0  # a change bigger than this is shown as a warning before the question
ELEVATION_RANGE_M = (-500.0, 9000.0)  # the schema's range for a level in the site's datum


class CalibrationRefused(GaugeError):
    """The readings or the staff gauge value give a calibration that cannot be right."""


@dataclass(frozen=True)
class Readings:
    """What a calibration was computed from: the sensor's distance (face to water) or depth
    (water above the transmitter), in metres."""

    kind: str  # "distance" | "depth"
    count: int
    mean_m: float
    sd_m: float
    low_m: float
    high_m: float


def offset_from_staff_gauge(
    current: CalibrationConfig, readings: Readings, staff_level_m: float
) -> CalibrationConfig:
    """The calibration that makes the mean reading show `staff_level_m`: for a ranger the
    elevation of its face (level = elevation - distance), for a transmitter the offset
    (level = offset + scale * depth)."""
    if readings.kind == "distance":
        if readings.mean_m <= 0:
            raise CalibrationRefused(
                _(
                    "a distance of {distance} m cannot be: the sensor would be below the water"
                    " it measures"
                ).format(distance=f"{readings.mean_m:.3f}")
            )
        new = CalibrationConfig(
            sensor_elevation_m=round(staff_level_m + readings.mean_m, 4),
            offset_m=current.offset_m,
            scale=current.scale,
        )
        value, name = new.sensor_elevation_m, "sensor_elevation_m"
    else:
        if readings.mean_m < SUBMERGED_MIN_M:
            raise CalibrationRefused(
                _(
                    "the transmitter reads {depth} m of water: it is not submerged (or not"
                    " connected); calibrate it under water"
                ).format(depth=f"{readings.mean_m:.3f}")
            )
        new = CalibrationConfig(
            sensor_elevation_m=current.sensor_elevation_m,
            offset_m=round(staff_level_m - current.scale * readings.mean_m, 4),
            scale=current.scale,
        )
        value, name = new.offset_m, "offset_m"
    low, high = ELEVATION_RANGE_M
    if not low <= value <= high:
        raise CalibrationRefused(
            _(
                "{name} would be {value} m, outside {low} .. {high} m: check the staff gauge"
                " value (metres, in the site's datum)"
            ).format(name=name, value=f"{value:.3f}", low=f"{low:g}", high=f"{high:g}")
        )
    return new


SPAN_MIN_M = 0.2  # two points closer than this in depth give a span that noise decides
SPAN_RANGE = (0.8, 1.25)  # a transmitter whose span is outside this is wrong, not calibrated


def span_from_points(current: CalibrationConfig, first: dict, second: dict) -> CalibrationConfig:
    """Offset and scale through two points (staff gauge level, mean depth), taken at
    different water levels, often on different days: level = offset + scale * depth."""
    depth_1, depth_2 = first["mean_m"], second["mean_m"]
    level_1, level_2 = first["staff_gauge_m"], second["staff_gauge_m"]
    if abs(depth_2 - depth_1) < SPAN_MIN_M:
        raise CalibrationRefused(
            _(
                "the two points are {apart} cm apart in depth; take the second when the water"
                " is at least {least} cm higher or lower"
            ).format(apart=f"{abs(depth_2 - depth_1) * 100:.0f}", least=f"{SPAN_MIN_M * 100:.0f}")
        )
    scale = (level_2 - level_1) / (depth_2 - depth_1)
    low, high = SPAN_RANGE
    if not low <= scale <= high:
        raise CalibrationRefused(
            _(
                "the span would be {scale}, far from 1 (allowed {low} .. {high}): a staff gauge"
                " misread, a transmitter in the wrong unit or range, or a point taken while the"
                " water moved; check both points (calibrate history)"
            ).format(scale=f"{scale:.3f}", low=low, high=high)
        )
    offset = level_1 - scale * depth_1
    return CalibrationConfig(
        sensor_elevation_m=current.sensor_elevation_m,
        offset_m=round(offset, 4),
        scale=round(scale, 5),
    )


def level_of(calibration: CalibrationConfig, readings: Readings) -> float:
    """The level the mean reading shows under `calibration`."""
    if readings.kind == "distance":
        return calibration.sensor_elevation_m - readings.mean_m
    return calibration.offset_m + calibration.scale * readings.mean_m


class CalibrationFiles:
    """calibration.toml, its previous version and its history, beside config.toml."""

    def __init__(self, config_path: Path):
        self.directory = Path(config_path).parent
        self.path = self.directory / CALIBRATION_FILE_NAME
        self.previous = self.directory / (CALIBRATION_FILE_NAME + PREVIOUS_SUFFIX)
        self.history_path = self.directory / HISTORY_FILE_NAME

    def write(
        self,
        old: CalibrationConfig,
        new: CalibrationConfig,
        action: str,
        details: dict,
        now: float,
    ) -> dict:
        """Replace calibration.toml with `new`, atomically, and append the history line."""
        entry = {
            "time": _stamp(now),
            "user": _user(),
            "action": action,
            "old": asdict(old),
            "new": asdict(new),
            **details,
        }
        text = _calibration_toml(new, entry)
        try:
            if self.path.exists():
                # Copied, not moved: calibration.toml must exist at every moment, or a
                # daemon starting in between would run on the template's values.
                _copy(self.path, self.previous)
            _write_atomically(self.path, text)
            self._append_history(entry)
        except PermissionError:
            raise GaugeError(
                _("cannot write {path}: permission denied; run it with sudo").format(path=self.path)
            ) from None
        except OSError as error:
            raise GaugeError(
                _("cannot write {path}: {reason}").format(
                    path=self.path, reason=error.strerror or error
                )
            ) from None
        return entry

    def record_point(self, details: dict, now: float) -> dict:
        """A calibration point (for `span`): in the history only; nothing changes yet."""
        entry = {"time": _stamp(now), "user": _user(), "action": "point", **details}
        try:
            self._append_history(entry)
        except PermissionError:
            raise GaugeError(
                _("cannot write {path}: permission denied; run it with sudo").format(
                    path=self.history_path
                )
            ) from None
        return entry

    def _append_history(self, entry: dict) -> None:
        with open(self.history_path, "a", encoding="utf-8") as history:
            history.write(json.dumps(entry) + "\n")
            history.flush()
            os.fsync(history.fileno())

    def points_since_last_change(self) -> list[dict]:
        """The points recorded since the calibration last changed: what a span is made of."""
        points: list[dict] = []
        for entry in self.history():
            if entry.get("action") == "point":
                points.append(entry)
            elif "new" in entry:
                points = []
        return points

    def history(self) -> list[dict]:
        """Every recorded change, oldest first; a damaged line is shown, not fatal."""
        if not self.history_path.exists():
            return []
        entries = []
        text = read_small_file(self.history_path, 16 * 1024 * 1024).decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"damaged_line": number}
            entries.append(entry if isinstance(entry, dict) else {"damaged_line": number})
        return entries


def _stamp(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z")


def _user() -> str:
    """Who ran it: the technician behind sudo, not root."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _calibration_toml(calibration: CalibrationConfig, entry: dict) -> str:
    return (
        f"# Written by `gauge-agent calibrate` ({entry['action']}) on {entry['time']} by"
        f" {entry['user']}.\n"
        f"# The version before is {CALIBRATION_FILE_NAME}{PREVIOUS_SUFFIX}; every change is in"
        f" {HISTORY_FILE_NAME}.\n"
        "[calibration]\n"
        f"sensor_elevation_m = {calibration.sensor_elevation_m!r}\n"
        f"offset_m = {calibration.offset_m!r}\n"
        f"scale = {calibration.scale!r}\n"
    )


def _copy(source: Path, target: Path) -> None:
    _write_atomically(target, source.read_bytes().decode("utf-8", "replace"))


def _write_atomically(path: Path, text: str) -> None:
    """A power cut at any moment leaves the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # read by the service user; it holds no secret
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself reaches the card
    finally:
        os.close(directory)
