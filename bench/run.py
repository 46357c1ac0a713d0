"""Benchmarks for the replay and the per-sample pipeline + engine cost.

Prints one JSON object per metric. Each figure comes with a baseline measured in the same run
on the same machine, and the ratio between them, so numbers from different machines compare.
Targets (issue #2): replay >= 100,000 samples/s (a year of 10-second samples in < 30 s).
Targets (issue #4): enqueue at least as fast as persist-queue, drain >= 5,000 readings/s,
dequeue at 1M rows within 2x of empty, <= 8 KiB written per durable reading.
Target (issue #7): the multi-hypothesis gate well under a millisecond per sample, against the
old single-anchor gate (bench/legacy_gate.py) on the same readings.
Targets (issue #13): an idle output thread near a process blocked on an Event; siren latency from
the reading to the pin p99 under 10 ms, also while the upstream hangs; durable put at 1M queued
within 1.2x of empty; replay of ISO-time recordings at 300,000 samples/s against a csv + float +
compare floor (and the most a pure-Python replay could reach, bench/replay_ceiling.py).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

STARTUP_RSS_KB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.alarm import AlarmEngine
from agent.config import build_config
from agent.pipeline import Pipeline
from agent.replay import ReplayOptions, run_replay
from bench.replay_ceiling import quiet_loop

SAMPLES = 1_000_000
YEAR_OF_10S_SAMPLES = 365 * 24 * 360


def synthetic_levels(count: int, seed: int = 7) -> list[tuple[float, float | None]]:
    """A year-like series at 10 s: slow seasonal swing, floods, 1 % spikes, 2 % no-echo."""
    rnd = random.Random(seed)
    start = 1_700_000_000.0
    series = []
    for i in range(count):
        t = start + 10.0 * i
        level = 6.9 + 0.3 * math.sin(i / 200_000) + 1.8 * max(0.0, math.sin(i / 9_000)) ** 8
        roll = rnd.random()
        if roll < 0.02:
            series.append((t, None))
        elif roll < 0.03:
            series.append((t, rnd.uniform(0.25, 4.0)))
        else:
            series.append((t, 10.40 - level + rnd.gauss(0, 0.005)))
    return series


def write_csv(path: Path, series, iso_times: bool = True) -> None:
    """The series as a recording: ISO 8601 times as real recordings carry them (both in
    ../shared/data), or epoch seconds."""
    import datetime as dt

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "distance_m"])
        for t, value in series:
            moment = dt.datetime.fromtimestamp(t, dt.UTC).isoformat() if iso_times else f"{t:.0f}"
            writer.writerow([moment, "" if value is None else f"{value:.4f}"])


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def emit(name: str, value: float, unit: str, baseline_name: str, baseline: float, **extra) -> None:
    print(
        json.dumps(
            {
                "metric": name,
                "value": round(value, 3),
                "unit": unit,
                "baseline": baseline_name,
                "baseline_value": round(baseline, 3),
                "ratio": round(value / baseline, 3) if baseline else None,
                **extra,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--only", choices=["pipeline", "storage", "gate", "outputs"], default=None)
    parser.add_argument("--outbox-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.only == "gate":
        bench_gate(_bench_config(), synthetic_levels(args.samples))
    elif args.only not in ("storage", "outputs"):
        bench_pipeline(args)
    if args.only in (None, "outputs"):
        bench_outputs()
    if args.only in (None, "storage"):
        bench_storage(args)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "metric": "peak_rss_mb",
                "value": round(peak_kb / 1024, 1),
                "unit": "MB",
                "baseline": "python_startup_rss_mb",
                "baseline_value": round(STARTUP_RSS_KB / 1024, 1),
                "ratio": round(peak_kb / STARTUP_RSS_KB, 2),
            }
        ),
        flush=True,
    )


def bench_outputs() -> None:
    from bench.outputs import bench_idle_cpu, bench_siren_latency

    idle = bench_idle_cpu()
    emit(
        "idle_output_cpu_ms_per_s",
        idle["ours"],
        "ms/s",
        "python_blocked_on_an_event_ms_per_s",
        idle["floor"],
        target_ratio=3.0,
    )
    emit(
        "idle_output_cpu_ms_per_s_vs_bare_heartbeat",
        idle["ours"],
        "ms/s",
        "bare_heartbeat_flash_loop_ms_per_s",
        idle["heartbeat"],
    )
    emit(
        "idle_output_cpu_ms_per_s_vs_50ms_tick",
        idle["ours"],
        "ms/s",
        "old_50ms_tick_ms_per_s",
        idle["old"],
    )
    # Reading to siren pin through the whole daemon. The target holds in every case: with
    # the upstream answering, with it hanging in a request, and with no uplink at all.
    for upstream in ("up", "hanging", "none"):
        latency = bench_siren_latency(upstream)
        suffix = "" if upstream == "up" else f"_upstream_{upstream}"
        emit(
            f"siren_latency_p50_ms{suffix}",
            latency["p50_ms"],
            "ms",
            "old_50ms_tick_p50_ms",
            latency["old_p50_ms"],
            upstream_requests=latency["upstream_requests"],
        )
        emit(
            f"siren_latency_p99_ms{suffix}",
            latency["p99_ms"],
            "ms",
            "old_50ms_tick_p99_ms",
            latency["old_p99_ms"],
            target_ms=10.0,
            upstream_requests=latency["upstream_requests"],
        )


def bench_storage(args) -> None:
    from bench.storage import (
        bench_daemon_cpu,
        bench_dequeue,
        bench_drain,
        bench_enqueue,
        bench_first_sample,
        bench_put_at_depth,
        bench_reopen,
        upload_costs,
    )

    enqueue = bench_enqueue(1000)
    emit(
        "enqueue_us_per_durable_reading",
        enqueue["ours_us"],
        "us",
        "persist_queue_SQLiteAckQueue_put_us",
        enqueue["peer_us"],
    )
    emit(
        "enqueue_us_on_the_sampling_thread",
        enqueue["submit_us"],
        "us",
        "persist_queue_SQLiteAckQueue_put_us",
        enqueue["peer_us"],
    )
    emit(
        "bytes_written_per_durable_reading",
        enqueue["ours_bytes"],
        "bytes",
        "persist_queue_bytes_per_put",
        enqueue["peer_bytes"],
    )
    costs = upload_costs((0, 1, 6))
    store_only, each, batched = costs[0], costs[1], costs[6]
    emit(
        "bytes_written_per_reading_uploading_in_calm_batches",
        batched["bytes"],
        "bytes",
        "store_only_bytes_per_reading",
        store_only["bytes"],
        target_bytes=8192,
    )
    emit(
        "bytes_written_per_reading_uploading_each_at_once",
        each["bytes"],
        "bytes",
        "store_only_bytes_per_reading",
        store_only["bytes"],
    )
    emit(
        "cpu_us_per_reading_uploading_in_calm_batches",
        batched["cpu_us"],
        "us",
        "store_only_cpu_us_per_reading",
        store_only["cpu_us"],
        target_ratio=1.5,
    )
    put = bench_put_at_depth(args.outbox_rows)
    emit(
        "durable_put_us_at_1M_rows",
        put["big_us"],
        "us",
        "durable_put_us_empty",
        put["empty_us"],
        rows=args.outbox_rows,
        target_ratio=1.2,
        bytes_per_put_at_1M_rows=round(put["big_bytes"]),
        bytes_per_put_empty=round(put["empty_bytes"]),
    )
    dequeue = bench_dequeue(args.outbox_rows)
    emit(
        "dequeue_batch_500_ms_at_1M_rows",
        dequeue["big_ms"],
        "ms",
        "dequeue_batch_500_ms_nearly_empty",
        dequeue["small_ms"],
        rows=args.outbox_rows,
    )
    reopen = bench_reopen(args.outbox_rows)
    emit(
        "outbox_open_ms_at_1M_rows",
        reopen["big_open_ms"],
        "ms",
        "outbox_open_ms_empty",
        reopen["empty_open_ms"],
        rows=args.outbox_rows,
        target_ratio=10.0,
        queue_counted_after_ms=round(reopen["big_counted_ms"], 1),
    )
    first = bench_first_sample(args.outbox_rows)
    emit(
        "time_to_first_sample_ms_at_1M_rows",
        first["big_ms"],
        "ms",
        "time_to_first_sample_ms_empty",
        first["empty_ms"],
        rows=args.outbox_rows,
        target_ratio=1.2,
    )
    daemon = bench_daemon_cpu()
    emit(
        "daemon_cpu_us_per_sample_uploading",
        daemon["uploading_us"],
        "us",
        "daemon_cpu_us_per_sample_store_only",
        daemon["store_only_us"],
        target_ratio=1.5,
    )
    drain = bench_drain(20000)
    emit(
        "drain_readings_per_s",
        drain["readings_per_s"],
        "readings/s",
        "target_readings_per_s",
        5000.0,
        readings=20000,
    )


def bench_gate(config, series) -> None:
    """The gate alone, old and new, on the same valid readings (levels), plus the object-heavy
    street recording where the new gate does the most work, if it is here."""
    from agent.gate import PlausibilityGate
    from bench.legacy_gate import LegacyPlausibilityGate

    settings = config.filter
    levels = [(t, 10.40 - value) for t, value in series if value is not None]

    def run_new(readings):
        gate = PlausibilityGate(
            settings.max_rate_m_per_min,
            settings.noise_m,
            settings.acquire_samples,
            settings.confirm_samples,
            True,
        )
        note, judge = gate.note_sample, gate.judge
        for t, level in readings:
            note(t)
            judge(t, level)

    def run_old(readings):
        gate = LegacyPlausibilityGate(
            settings.max_rate_m_per_min, settings.noise_m, settings.acquire_samples
        )
        judge = gate.judge
        for t, level in readings:
            judge(t, level)

    for name, readings in (("synthetic_year", levels), ("star_bee", _star_bee_levels())):
        if not readings:
            continue
        new_s = min(timed(lambda: run_new(readings)) for _ in range(3))
        old_s = min(timed(lambda: run_old(readings)) for _ in range(3))
        emit(
            f"gate_us_per_sample_{name}",
            new_s / len(readings) * 1e6,
            "us",
            "legacy_gate_us_per_sample",
            old_s / len(readings) * 1e6,
            samples=len(readings),
        )


def _star_bee_levels() -> list[tuple[float, float]]:
    """duly_star_bee as levels (street at 2507 mm), repeated to 100k readings; [] if absent."""
    import datetime as dt

    path = (
        Path(__file__).resolve().parent.parent.parent
        / "shared"
        / "data"
        / "floodnet_duly_star_bee.csv"
    )
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = [
            (dt.datetime.fromisoformat(r["time"]).timestamp(), int(r["dist_mm"]))
            for r in csv.DictReader(handle)
        ]
    one = [(t, 2.507 - d / 1000) for t, d in rows if d not in (9999, 5000, 300, 500)]
    span = one[-1][0] - one[0][0] + 60.0
    repeated = []
    while len(repeated) < 100_000:
        shift = span * (len(repeated) // len(one))
        repeated.extend((t + shift, level) for t, level in one)
    return repeated[:100_000]


def _bench_config():
    return build_config(
        {
            "alarm": {
                "levels": [
                    {"name": "waspada", "above_m": 7.5},
                    {"name": "siaga", "above_m": 7.9},
                    {"name": "awas", "above_m": 8.5},
                ]
            }
        }
    )


def bench_pipeline(args) -> None:
    config = _bench_config()
    series = synthetic_levels(args.samples)

    # 1. Pipeline + engine per sample, in memory. Baseline: the same loop calling a function
    #    that does nothing, i.e. the Python iteration and call overhead alone.
    def pipeline_loop():
        pipeline = Pipeline(config, "distance", 1.0)
        engine = AlarmEngine(config, series[0][0])
        for t, value in series:
            engine.run_until(t)
            engine.update(pipeline.process(t, value, None if value is not None else "no_echo"))

    def empty_loop():
        def nothing(t, value, reason):
            return None

        for t, value in series:
            nothing(t, value, None)

    loop_s = timed(pipeline_loop)
    empty_s = timed(empty_loop)
    emit(
        "pipeline_engine_us_per_sample",
        loop_s / len(series) * 1e6,
        "us",
        "empty_loop_us_per_sample",
        empty_s / len(series) * 1e6,
        samples=len(series),
    )
    bench_gate(config, series)

    # 2. Replay throughput from a CSV file, JSON events written to a buffer. Baseline: reading
    #    and splitting the same file with the csv module and doing nothing else.
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "year.csv"
        write_csv(path, series)
        options = ReplayOptions(
            time_column="time", value_column="distance_m", value_kind="distance", unit="m"
        )
        out, err = io.StringIO(), io.StringIO()
        replay_s = timed(lambda: run_replay(path, config, options, out=out, err=err))

        def floor():
            """Read the file and look at each value: csv, float, one comparison a row."""
            above = 0
            with open(path, newline="") as handle:
                rows = csv.reader(handle)
                next(rows)
                for row in rows:
                    value = row[1]
                    if value and float(value) < 1.0:
                        above += 1
            return above

        floor_s = min(timed(floor) for _ in range(2))
        ceiling_s = min(timed(lambda: quiet_loop(path, config)) for _ in range(2))
        size_mb = os.path.getsize(path) / 1e6
    rate = len(series) / replay_s
    emit(
        "replay_samples_per_s_iso_times",
        rate,
        "samples/s",
        "csv_float_compare_rows_per_s",
        len(series) / floor_s,
        samples=len(series),
        file_mb=round(size_mb, 1),
        year_of_10s_samples_s=round(YEAR_OF_10S_SAMPLES / rate, 1),
        events=out.getvalue().count("\n"),
        target_samples_per_s=300_000,
    )
    # The most a pure-Python replay could reach on this machine (bench/replay_ceiling.py):
    # parsing and every quiet-sample state update written out in one loop.
    emit(
        "replay_ceiling_rows_per_s_inlined_quiet_loop",
        len(series) / ceiling_s,
        "rows/s",
        "csv_float_compare_rows_per_s",
        len(series) / floor_s,
        samples=len(series),
    )


if __name__ == "__main__":
    main()
