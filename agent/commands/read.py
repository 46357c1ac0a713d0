"""`gauge-agent read`: live samples for the technician, with running figures and whether the
reading is stable. From the running daemon over its control socket (it owns the sensor), or,
when no daemon runs (first commissioning), from the sensor opened here through the same
driver and pipeline."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

from agent import control
from agent.commands.common import load_or_default
from agent.config import Config
from agent.errors import EXIT_OK, GaugeError
from agent.stability import STABLE_READINGS, LevelStats

NAME = "read"
HELP = "live samples: raw, temperature, distance or depth, level, and whether it is stable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path)
    parser.add_argument(
        "--count",
        type=_count,
        default=STABLE_READINGS,
        metavar="N",
        help=f"how many samples (default {STABLE_READINGS}, enough to tell whether it is stable)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per sample")


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= control.READ_MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a whole number from 1 to {control.READ_MAX_COUNT}"
        )
    return int(text)


def execute(args: argparse.Namespace) -> int:
    config = load_or_default(args.config)
    samples, source = _samples(config, args.count)
    stats = LevelStats()
    if not args.json:
        print(f"reading {args.count} samples from {source}", flush=True)
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


def _samples(config: Config, count: int) -> tuple[Iterator[dict], str]:
    runtime = Path(config.storage.runtime_dir)
    # The daemon waits up to 10 s + 3 intervals for a sample; wait a little longer than that.
    timeout = 15.0 + 3 * max(config.sensor.interval_s, config.sensor.alarm_interval_s)
    try:
        client = control.request(runtime, {"command": "read", "count": count}, timeout)
    except PermissionError:
        raise GaugeError(
            f"cannot reach the daemon at {runtime / control.SOCKET_NAME}: permission denied."
            " Add your user to the service's group (sudo usermod -aG gauge-agent $USER), log"
            " in again, or use sudo"
        ) from None
    except OSError as error:
        raise GaugeError(f"cannot reach the daemon at {runtime}: {error}") from None
    if client is not None:
        return _from_daemon(client), "the running daemon"
    return _from_sensor(config, count), f"the sensor ({config.sensor.kind}), no daemon running"


def _from_daemon(client) -> Iterator[dict]:
    try:
        for answer in control.answers(client):
            if "sample" in answer:
                yield answer["sample"]
            elif not answer.get("ok"):
                raise GaugeError(f"the daemon says: {answer.get('error')}")
    except TimeoutError:
        raise GaugeError("the daemon stopped answering (is it still running?)") from None


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
            for _ in range(count):
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


def _metres(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} m"


def _line(sample: dict, stats: LevelStats) -> str:
    clock = sample["time"][11:19]
    raw = "-" if sample["raw"] is None else f"{sample['raw']:g} {sample['raw_unit']}"
    parts = [clock, f"raw {raw}"]
    if sample.get("temperature_c") is not None:
        parts.append(f"temp {sample['temperature_c']:.1f} C")
    if "distance_m" in sample:
        parts.append(f"distance {_metres(sample['distance_m'])}")
    else:
        parts.append(f"depth {_metres(sample.get('depth_m'))}")
    parts.append(f"level {_metres(sample['level_m'])}")
    if sample["ok"]:
        parts.append(f"smoothed {_metres(sample['smoothed_m'])}")
    else:
        parts.append(f"not used: {sample['reason']}")
    if stats.count:
        parts.append(f"| mean {stats.mean:.3f} sd {stats.sd * 100:.1f} cm n {stats.count}")
    return "  ".join(parts)


def _summary(stats: LevelStats) -> str:
    if not stats.count:
        return "no plausible reading: not stable (look at the reasons above)"
    return f"level {stats.mean:.3f} m, mean of {stats.count}: {stats.verdict()}"
