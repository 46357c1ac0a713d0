"""What several commands share: where the configuration is, how to read it, and live samples
from the daemon or the sensor."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from agent import control
from agent.config import DEFAULT_CONFIG_PATH, Config, load_config
from agent.errors import GaugeError
from agent.i18n import _


def default_config_path() -> Path:
    """The configuration a command reads without --config: $GAUGE_AGENT_CONFIG, else the
    installed /etc path."""
    return Path(os.environ.get("GAUGE_AGENT_CONFIG", DEFAULT_CONFIG_PATH))


def load(path: Path | None) -> Config:
    return load_config(path if path is not None else default_config_path())


def load_or_default(path: Path | None) -> Config:
    """For commands that read what the daemon writes: without a config file, the embedded
    default (the demo's daemon uses it too)."""
    if path is None and not default_config_path().exists():
        return Config()
    return load(path)


def whole_number(low: int, high: int, message: str) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`, else `message` (translated,
    with {text}, {low} and {high}) as the usage error."""

    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(message.format(text=text, low=low, high=high))
        return int(text)

    return parse


def confirm(question: str, yes: bool) -> bool:
    """Ask on stdin (the technician answers y); `--yes` answers for them. No answer is no."""
    if yes:
        return True
    print(f"{question} {_('[y/N]')} ", end="", flush=True)
    # y (yes) or, in Indonesian, y (ya): the same key.
    return sys.stdin.readline().strip().lower() in ("y", "yes", "ya")


def connect_to_daemon(config: Config, message: dict, timeout_s: float):
    """Send `message` to the running daemon: the connection to read answers from, or None when
    no daemon listens. A GaugeError says why it cannot be reached."""
    runtime = Path(config.storage.runtime_dir)
    try:
        return control.request(runtime, message, timeout_s)
    except PermissionError:
        raise GaugeError(
            _(
                "cannot reach the daemon at {path}: permission denied. Add your user to the"
                " service's group (sudo usermod -aG gauge-agent $USER), log in again, or use"
                " sudo"
            ).format(path=runtime / control.SOCKET_NAME)
        ) from None
    except OSError as error:
        raise GaugeError(
            _("cannot reach the daemon at {path}: {reason}").format(path=runtime, reason=error)
        ) from None


def daemon_error(answer: dict) -> str:
    """A daemon's refusal in this command's language: its message and values when it sent
    them (see control.RequestError), else its English words."""
    message, values = answer.get("message"), answer.get("values")
    if isinstance(message, str) and isinstance(values, dict):
        try:
            return _(message).format(**values)
        except (KeyError, IndexError, ValueError):
            pass  # a daemon of another version: its own words will do
    return str(answer.get("error", "?"))


def ask_daemon(config: Config, message: dict, timeout_s: float = 10.0) -> dict | None:
    """One request, one answer; None when no daemon runs."""
    client = connect_to_daemon(config, message, timeout_s)
    if client is None:
        return None
    try:
        return next(control.answers(client), {"ok": False, "error": _("no answer")})
    except OSError as error:
        raise GaugeError(_("the daemon did not answer: {reason}").format(reason=error)) from None


def live_samples(config: Config, count: int) -> tuple[Iterator[dict], str]:
    """`count` samples and where they come from: the running daemon over its control socket
    (it owns the sensor), or, when no daemon runs, the sensor opened here."""
    # The daemon waits up to 10 s + 3 intervals for a sample; wait a little longer than that.
    timeout = 15.0 + 3 * max(config.sensor.interval_s, config.sensor.alarm_interval_s)
    client = connect_to_daemon(config, {"command": "read", "count": count}, timeout)
    if client is not None:
        return _from_daemon(client), _("the running daemon")
    return _from_sensor(config, count), _("the sensor ({kind}), no daemon running").format(
        kind=config.sensor.kind
    )


def _from_daemon(client) -> Iterator[dict]:
    try:
        for answer in control.answers(client):
            if "sample" in answer:
                yield answer["sample"]
            elif not answer.get("ok"):
                raise GaugeError(_("the daemon says: {error}").format(error=daemon_error(answer)))
    except TimeoutError:
        raise GaugeError(_("the daemon stopped answering (is it still running?)")) from None


def _from_sensor(config: Config, count: int) -> Iterator[dict]:
    """No daemon: open the sensor here, through the same driver, supervisor and pipeline.
    The state lock keeps a daemon from starting on the same port meanwhile."""
    from agent.pipeline import Pipeline
    from agent.sensors import open_sensor
    from agent.statelock import StateLock

    lock = StateLock(Path(config.storage.state_dir)).acquire()
    try:
        sensor = open_sensor(config)
        try:
            pipeline = Pipeline(config, sensor.value_kind, sensor.unit_to_m)
            health = getattr(sensor, "health", None)
            period = config.sensor.alarm_interval_s  # the daemon's fast pace
            next_at = time.monotonic()
            for _sample in range(count):
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += period
                now = time.monotonic()
                measurement = pipeline.process_burst(now, sensor.read_burst(config.sensor.burst))
                yield control.sample_body(
                    measurement,
                    wall_time=time.time(),
                    raw_unit=sensor.unit,
                    unit_to_m=sensor.unit_to_m,
                    value_kind=sensor.value_kind,
                    temperature_c=health().get("temperature_c") if health else None,
                )
        finally:
            sensor.close()
    finally:
        lock.release()
