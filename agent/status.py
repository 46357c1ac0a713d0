"""The status file: what the running daemon last saw, for `gauge-agent status` and monitoring.

Written atomically (temporary file + rename) into `storage.runtime_dir`, a tmpfs under systemd,
because it is rewritten every sample and an SD card should not be. A write that fails is
logged once and otherwise ignored: the status must never hold up a sample or the siren.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from agent.config import Config
from agent.errors import StatusUnavailable, UnreadableFile
from agent.files import read_small_file
from agent.i18n import N_, _

log = logging.getLogger("gauge-agent")

STATUS_FILE_NAME = "status.json"


class StatusWriter:
    def __init__(self, directory: Path):
        self.path = directory / STATUS_FILE_NAME
        self._failing = False

    def write(self, record: dict) -> None:
        temporary = self.path.with_name(f".{STATUS_FILE_NAME}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as error:
            if not self._failing:
                log.warning(
                    "status not written to %s: %s (sampling goes on)",
                    self.path,
                    error.strerror or error,
                )
            self._failing = True
            return
        if self._failing:
            log.info("status written to %s again", self.path)
            self._failing = False


def read_status(config: Config) -> dict:
    """The status file as a dict; StatusUnavailable (one line) when it is missing, half-written
    or damaged."""
    path = Path(config.storage.runtime_dir) / STATUS_FILE_NAME
    try:
        status = json.loads(read_small_file(path).decode("utf-8"))
    except UnreadableFile as error:
        if error.missing:
            message = _("no status at {path}: is the daemon running? (systemctl status {unit})")
            raise StatusUnavailable(message.format(path=path, unit="gauge-agent")) from None
        raise StatusUnavailable(str(error)) from None
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise StatusUnavailable(
            _("{path} is damaged ({reason}); the daemon rewrites it every sample").format(
                path=path, reason=str(error)[:100]
            )
        ) from None
    if not isinstance(status, dict):
        raise StatusUnavailable(
            _("{path} is damaged ({reason}); the daemon rewrites it every sample").format(
                path=path, reason=_("not a JSON object")
            )
        )
    return status


# The status file is read by people's tools too: every field is taken as it may come, a
# wrong type shows as "?" instead of a traceback.
def _number(status: dict, key: str) -> float | None:
    value = status.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(status: dict, key: str) -> str:
    value = status.get(key)
    return value if isinstance(value, str) else "?"


def _table(status: dict, key: str) -> dict:
    value = status.get(key)
    return value if isinstance(value, dict) else {}


def age_s(status: dict, now: float) -> float:
    return now - (_number(status, "updated_epoch") or 0.0)


def is_fresh(status: dict, now: float) -> bool:
    """Written recently enough that the daemon is evidently alive (three sample periods)."""
    interval = _number(status, "interval_s") or 10.0
    return status.get("running") is True and age_s(status, now) <= 3 * interval + 5


def one_line(status: dict, now: float) -> str:
    level = _number(status, "level_m")
    rate = _number(status, "rate_m_per_h")
    siren = _table(status, "siren")
    faults = status.get("faults")
    faults = ",".join(str(f) for f in faults) if isinstance(faults, list) and faults else _("none")
    freshness = (
        ""
        if is_fresh(status, now)
        else (
            "  " + _("[STOPPED]")
            if status.get("running") is not True
            else "  " + _("[STALE {age:.0f} s]").format(age=age_s(status, now))
        )
    )
    siren_text = _text(siren, "pattern") + (
        " " + _("(silenced)") if siren.get("silenced") is True else ""
    )
    parts = [
        _text(status, "updated"),
        _text(status, "station"),
        _("level {value}").format(value="---" if level is None else f"{level:6.3f} m"),
        _("rate {value}").format(value="---" if rate is None else f"{rate:+.3f} m/h"),
        _("state {value}").format(value=_text(status, "state").upper()),
        _("warning {value}").format(value=_text(status, "warning").upper()),
        _("siren {value}").format(value=siren_text),
        _("faults {value}").format(value=faults),
    ]
    return "  ".join(parts) + f"{_maintenance_text(status)}{_upstream_text(status, now)}{freshness}"


def _ago(seconds: float | None) -> str:
    return _("never") if seconds is None else _("{seconds:.0f} s ago").format(seconds=seconds)


def details_line(status: dict, now: float) -> str:
    """What a technician asks first, on a second line: how old the last valid reading is,
    whether the clock is set, when the calibration was made, the queue and the last upload."""
    parts = []
    valid = _number(status, "last_valid_s_ago")
    parts.append(_("last valid reading {age}").format(age="?" if valid is None else _ago(valid)))
    synchronised = status.get("clock_synchronised")
    if synchronised is True:
        parts.append(_("clock synchronised"))
    else:
        parts.append(_("clock NOT synchronised") if synchronised is False else _("clock unknown"))
    calibration = _table(status, "calibration")
    changed = calibration.get("changed")
    parts.append(
        _("calibrated {when}").format(when=changed)
        if isinstance(changed, str)
        else _("never calibrated")
    )
    outbox = _table(status, "outbox")
    counts = (
        (_queued(outbox), N_("queue {count}")),
        (_number(outbox, "dropped"), N_("dropped {count}")),
        (_number(outbox, "dead_lettered"), N_("dead letters {count}")),
    )
    for value, label in counts:
        parts.append(_(label).format(count="?" if value is None else f"{value:.0f}"))
    uplink = status.get("uplink")
    if isinstance(uplink, dict):
        last = _number(uplink, "last_upload")
        parts.append(_("last upload {age}").format(age=_ago(None if last is None else now - last)))
    else:
        parts.append(_("store only"))
    return "  " + "  ".join(parts)


def _maintenance_text(status: dict) -> str:
    maintenance = status.get("maintenance")
    if not isinstance(maintenance, dict):
        return ""
    return "  " + _("MAINTENANCE until {until}").format(until=_text(maintenance, "until"))


def _queued(outbox: dict) -> float | None:
    """Records waiting for upstream: in the file, and handed to the writer but not yet in it."""
    depth = _number(outbox, "depth")
    return None if depth is None else depth + (_number(outbox, "pending") or 0)


def _upstream_text(status: dict, now: float) -> str:
    queued = _queued(_table(status, "outbox"))
    if queued is None:
        return ""
    text = "  " + _("queue {count}").format(count=f"{queued:.0f}")
    if status.get("uplink") is None:
        return text + " " + _("(store only)")
    uplink = _table(status, "uplink")
    last = _number(uplink, "last_upload")
    text += "  " + _("last upload {age}").format(age=_ago(None if last is None else now - last))
    error = uplink.get("last_error")
    return text + (f" ({error})" if isinstance(error, str) and error else "")


def show_status(config: Config, as_json: bool = False, watch: float | None = None) -> int:
    """Print the status; exit 0 if the daemon is evidently running, 1 if not."""
    if watch is None:
        status = read_status(config)
        if as_json:
            print(json.dumps(status, indent=1))
        else:
            now = time.time()
            print(one_line(status, now))
            if is_fresh(status, now):
                print(details_line(status, now))
        return 0 if is_fresh(status, time.time()) else 1
    last_seen = None
    try:
        while True:
            try:
                latest = read_status(config)
            except StatusUnavailable as error:
                print(_("waiting: {error}").format(error=error), file=sys.stderr)
                time.sleep(watch)
                continue
            if latest.get("updated_epoch") != last_seen:
                last_seen = latest.get("updated_epoch")
                print(json.dumps(latest) if as_json else one_line(latest, time.time()), flush=True)
                if not latest.get("running", False):
                    return 1
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0
