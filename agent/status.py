"""The status file: what the running daemon last saw, for `gauge-agent status` and monitoring.

Written atomically (temporary file + rename) into `storage.runtime_dir`, a tmpfs under systemd,
because it is rewritten every sample and an SD card should not be. A write that fails is
logged once and otherwise ignored: the status must never hold up a sample or the siren.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from agent.config import Config
from agent.errors import StatusUnavailable

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
                log.warning("status not written to %s: %s (sampling goes on)", self.path,
                            error.strerror or error)
            self._failing = True
            return
        if self._failing:
            log.info("status written to %s again", self.path)
            self._failing = False


def read_status(config: Config) -> dict:
    path = Path(config.storage.runtime_dir) / STATUS_FILE_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StatusUnavailable(f"no status at {path}: is the daemon running?"
                                " (systemctl status gauge-agent)") from None
    except (OSError, ValueError) as error:
        raise StatusUnavailable(f"cannot read {path}: {error}") from None


def age_s(status: dict, now: float) -> float:
    return now - float(status.get("updated_epoch", 0))


def is_fresh(status: dict, now: float) -> bool:
    """Written recently enough that the daemon is evidently alive (three sample periods)."""
    return status.get("running", False) and age_s(status, now) <= 3 * status.get("interval_s", 10) + 5


def one_line(status: dict, now: float) -> str:
    level = status.get("level_m")
    rate = status.get("rate_m_per_h")
    siren = status.get("siren", {})
    faults = ",".join(status.get("faults", [])) or "none"
    freshness = "" if is_fresh(status, now) else (
        "  [STOPPED]" if not status.get("running") else f"  [STALE {age_s(status, now):.0f} s]")
    siren_text = siren.get("pattern", "?") + (" (silenced)" if siren.get("silenced") else "")
    return (f"{status.get('updated', '?')}  {status.get('station', '?')}  level "
            f"{'---' if level is None else f'{level:6.3f} m'}  rate "
            f"{'---' if rate is None else f'{rate:+.3f} m/h'}  state {status.get('state', '?').upper()}"
            f"  warning {status.get('warning', '?').upper()}  siren {siren_text}  faults {faults}"
            f"{_upstream_text(status, now)}{freshness}")


def _upstream_text(status: dict, now: float) -> str:
    outbox = status.get("outbox") or {}
    if "depth" not in outbox:
        return ""
    text = f"  queue {outbox['depth'] + outbox.get('pending', 0)}"
    uplink = status.get("uplink")
    if uplink is None:
        return text + " (store only)"
    last = uplink.get("last_upload")
    text += "  last upload " + ("never" if last is None else f"{now - last:.0f} s ago")
    return text + (f" ({uplink['last_error']})" if uplink.get("last_error") else "")


def show_status(config: Config, as_json: bool = False, watch: float | None = None) -> int:
    """Print the status; exit 0 if the daemon is evidently running, 1 if not."""
    if watch is None:
        status = read_status(config)
        if as_json:
            print(json.dumps(status, indent=1))
        else:
            print(one_line(status, time.time()))
        return 0 if is_fresh(status, time.time()) else 1
    last_seen = None
    try:
        while True:
            try:
                status = read_status(config)
            except StatusUnavailable as error:
                print(f"waiting: {error}", file=sys.stderr)
                status = None
            if status is not None and status.get("updated_epoch") != last_seen:
                last_seen = status.get("updated_epoch")
                print(json.dumps(status) if as_json else one_line(status, time.time()), flush=True)
                if not status.get("running", False):
                    return 1
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0
