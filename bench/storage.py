"""Outbox and uplink benchmarks (issue #4), each against a baseline from the same run.

- enqueue: microseconds per *durable* reading (committed with fsync before the next one, as
  the daemon does every sample), ours vs persist-queue's SQLiteAckQueue at the same durability
  (both WAL with synchronous=FULL, one commit per record);
- bytes written to the disk per durable reading, from /proc/self/io, for both;
- dequeue: next_batch(500) + ack at 1,000,000 queued rows vs a nearly empty outbox;
- drain: readings/s delivered to the reference receiver running as its own process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.config import UplinkConfig
from agent.outbox import READING, Outbox
from agent.uplink import Uploader

BODY = {
    "level_m": 7.5123,
    "reading_m": 7.514,
    "raw": 288.6,
    "raw_unit": "cm",
    "ok": True,
    "reason": None,
    "state": "waspada",
    "warning": "waspada",
    "rate_m_per_h": 0.0123,
}


def written_bytes() -> int:
    with open("/proc/self/io") as handle:
        for line in handle:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def _ours(count: int) -> tuple[float, float, float]:
    """(durable us, bytes, us on the sampling thread) per reading."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        box = Outbox(Path(directory) / "outbox.sqlite")
        box.submit(READING, time.time(), BODY)
        box.flush()
        before, started, submitting = written_bytes(), time.perf_counter(), 0.0
        for _ in range(count):
            mark = time.perf_counter()
            box.submit(READING, time.time(), BODY)
            submitting += time.perf_counter() - mark
            box.flush()
        elapsed = time.perf_counter() - started
        written = written_bytes() - before
        box.close()
    return elapsed / count * 1e6, written / count, submitting / count * 1e6


def upload_cost(readings_per_delivery: int, rounds: int = 60) -> dict:
    """Bytes written to the card and CPU per reading when every `readings_per_delivery` durable
    readings are followed by one delivery (next_batch + acknowledgement), as the uploader does;
    0 = store only. At the default 10 s interval, batch_s = 60 makes it 6; sending each reading
    at once (the old behaviour, and still so while a warning is up) makes it 1."""
    per_round = max(readings_per_delivery, 1) if readings_per_delivery else 6
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        box = Outbox(Path(directory) / "outbox.sqlite")
        box.submit(READING, time.time(), BODY)
        box.flush()
        box.ack([record.seq for record in box.next_batch(10)])
        before, cpu = written_bytes(), time.process_time()
        for _ in range(rounds):
            for _ in range(per_round):
                box.submit(READING, time.time(), BODY)
                box.flush()
            if readings_per_delivery:
                batch = box.next_batch(500)
                box.ack([record.seq for record in batch], batch[0].epoch)
        count = rounds * per_round
        result = {
            "bytes": (written_bytes() - before) / count,
            "cpu_us": (time.process_time() - cpu) / count * 1e6,
        }
        box.close()
    return result


def upload_costs(variants: tuple[int, ...], repeats: int = 5) -> dict[int, dict]:
    """upload_cost for each variant, in turn, `repeats` times; the least CPU of each (CPU time
    here drifts by a third between back-to-back measurements, and a ratio of two figures
    taken minutes apart measured the drift)."""
    runs: dict[int, list[dict]] = {variant: [] for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            runs[variant].append(upload_cost(variant))
    return {
        variant: {
            "bytes": min(run["bytes"] for run in results),
            "cpu_us": min(run["cpu_us"] for run in results),
        }
        for variant, results in runs.items()
    }


def _peer(count: int) -> tuple[float, float]:
    from persistqueue import SQLiteAckQueue

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        queue = SQLiteAckQueue(directory, multithreading=True, auto_commit=True)
        for connection in (queue._conn, queue._putter, queue._getter):
            connection.execute("PRAGMA synchronous=FULL")  # the same durability as ours
        queue.put({"time": time.time(), **BODY})
        before, started = written_bytes(), time.perf_counter()
        for _ in range(count):
            queue.put({"time": time.time(), **BODY})
        elapsed = time.perf_counter() - started
        written = written_bytes() - before
    return elapsed / count * 1e6, written / count


def bench_enqueue(count: int, rounds: int = 3) -> dict:
    """Alternating rounds, best of each, so neither side pays for a cold disk cache."""
    ours, peers = [], []
    for _ in range(rounds):
        ours.append(_ours(count))
        peers.append(_peer(count))
    best_ours = min(ours)
    best_peer = min(peers)
    return {
        "ours_us": best_ours[0],
        "ours_bytes": best_ours[1],
        "submit_us": best_ours[2],
        "peer_us": best_peer[0],
        "peer_bytes": best_peer[1],
    }


def bench_put_at_depth(big_rows: int, count: int = 200, rounds: int = 7) -> dict:
    """Durable put (submit + flush, one fsync'd commit each, as every sample) into an outbox
    holding `big_rows` against an empty one: a long outage must not slow the sampling.
    An fsync here takes 0.3-0.7 ms and drifts, so the two alternate over many short rounds and
    the best round of each is kept; the bytes written per put (from /proc/self/io) say whether
    the deeper table makes the card do more work at all."""
    results: dict[str, list[float]] = {"empty": [], "big": []}
    written: dict[str, list[float]] = {"empty": [], "big": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        for label, rows in (("empty", 0), ("big", big_rows)):
            _filled_outbox(Path(directory) / f"{label}.sqlite", rows)
        boxes = {label: Outbox(Path(directory) / f"{label}.sqlite") for label in results}
        for box in boxes.values():
            while box.stats()["depth"] is None:  # the writer's check and count, once
                time.sleep(0.001)
        for _ in range(rounds):
            for label, box in boxes.items():
                before, started = written_bytes(), time.perf_counter()
                for _ in range(count):
                    box.submit(READING, time.time(), BODY)
                    box.flush()
                results[label].append((time.perf_counter() - started) / count * 1e6)
                written[label].append((written_bytes() - before) / count)
        for box in boxes.values():
            box.close()
    return {
        "empty_us": min(results["empty"]),
        "big_us": min(results["big"]),
        "empty_bytes": min(written["empty"]),
        "big_bytes": min(written["big"]),
    }


def _filled_outbox(path: Path, rows: int) -> None:
    box = Outbox(path)
    box.close()
    connection = sqlite3.connect(path)
    body = json.dumps(BODY)
    start = 1.7e9
    with connection:
        connection.executemany(
            "INSERT INTO readings VALUES (?, 'reading', ?, ?)",
            ((seq, start + 10 * seq, body) for seq in range(1, rows + 1)),
        )
    connection.close()


def bench_dequeue(big_rows: int, rounds: int = 20) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        for label, rows in (("small", 2000 + rounds * 500), ("big", big_rows)):
            path = Path(directory) / f"{label}.sqlite"
            _filled_outbox(path, rows)
            box = Outbox(path)
            # The rows are counted on the writer thread after opening, and the uploader's first
            # batch waits for that count: so does this measurement.
            while box.stats()["depth"] is None:
                time.sleep(0.001)
            started = time.perf_counter()
            for _ in range(rounds):
                batch = box.next_batch(500)
                box.ack([record.seq for record in batch])
            results[label] = (time.perf_counter() - started) / rounds * 1000
            box.close()
    return {"small_ms": results["small"], "big_ms": results["big"]}


def bench_reopen(big_rows: int, rounds: int = 5) -> dict:
    """Opening the outbox at start (what stands between a restart and the first sample):
    with `big_rows` queued against an empty one. The rows are counted afterwards, on the
    writer thread; the time until that count is done is given too."""
    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        for label, rows in (("empty", 0), ("big", big_rows)):
            path = Path(directory) / f"{label}.sqlite"
            _filled_outbox(path, rows)
            opened, counted = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                box = Outbox(path)
                opened.append(time.perf_counter() - started)
                while box.stats()["depth"] is None:
                    time.sleep(0.0005)
                counted.append(time.perf_counter() - started)
                assert box.stats()["depth"] == rows
                box.close()
            results[label] = (min(opened) * 1000, min(counted) * 1000)
    return {
        "empty_open_ms": results["empty"][0],
        "big_open_ms": results["big"][0],
        "big_counted_ms": results["big"][1],
    }


def bench_first_sample(big_rows: int, rounds: int = 5) -> dict:
    """What a restart after a long outage costs the siren: from starting `gauge-agent run`
    (the real process, simulated sensor, mock pins) to its first sample in the status file,
    with `big_rows` queued against an empty outbox. Nothing between start and the first sample
    may grow with the backlog (issue #13). The two alternate, round by round, so a drift of
    the machine (about 350-500 ms a start here) falls on both; the best of each is kept."""
    root = Path(__file__).resolve().parent.parent
    times: dict[str, list[float]] = {"empty": [], "big": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        configs = {}
        for label, rows in (("empty", 0), ("big", big_rows)):
            state = Path(directory) / label / "state"
            runtime = Path(directory) / label / "run"
            state.mkdir(parents=True)
            _filled_outbox(state / "outbox.sqlite", rows)
            config = Path(directory) / label / "config.toml"
            config.write_text(
                f'[storage]\nstate_dir = "{state}"\nruntime_dir = "{runtime}"\n'
                "[sensor]\ninterval_s = 1.0\nalarm_interval_s = 1.0\n"
            )
            configs[label] = (config, runtime)
        for _ in range(rounds):
            for label, (config, runtime) in configs.items():
                (runtime / "status.json").unlink(missing_ok=True)
                started = time.perf_counter()
                process = subprocess.Popen(
                    [sys.executable, "-m", "agent", "run", "--simulate", "--config", str(config)],
                    cwd=root,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
                )
                try:
                    deadline = started + 120
                    while not (runtime / "status.json").exists():
                        if process.poll() is not None or time.perf_counter() > deadline:
                            raise RuntimeError(f"the daemon did not sample ({label})")
                        time.sleep(0.002)
                    times[label].append(time.perf_counter() - started)
                finally:
                    process.terminate()
                    process.wait(30)
    return {"empty_ms": min(times["empty"]) * 1000, "big_ms": min(times["big"]) * 1000}


def bench_drain(count: int) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        directory = Path(directory)
        receiver, port = _start_receiver(directory)
        try:
            time.sleep(1.0)
            box = Outbox(directory / "outbox.sqlite")
            for i in range(count):
                box.submit(READING, 1.7e9 + 10 * i, BODY)
            box.flush(timeout=120)
            config = UplinkConfig(
                url=f"http://127.0.0.1:{port}/ingest",
                token_file=str(directory / "token"),
                batch_max=500,
            )
            uploader = Uploader(box, config, "bench-01")
            started = time.perf_counter()
            uploader.start()
            while box.stats()["depth"] > 0:
                if time.perf_counter() - started > 300:
                    raise RuntimeError(f"the uploader did not drain: {uploader.stats()}")
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            uploader.stop()
            box.close()
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    return {"readings_per_s": count / elapsed, "seconds": elapsed}


def _start_receiver(directory: Path) -> tuple[subprocess.Popen, int]:
    """The reference receiver as its own process, taking station bench-01's token."""
    (directory / "token").write_text("bench-token")
    (directory / "token").chmod(0o600)
    (directory / "receiver-tokens").write_text("bench-01 bench-token\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.receiver",
            "--port",
            str(port),
            "--db",
            str(directory / "receiver.sqlite"),
            "--token-file",
            str(directory / "receiver-tokens"),
        ],
        stderr=subprocess.DEVNULL,
    )
    return receiver, port


def _process_cpu_s(pid: int) -> float:
    """User + system CPU of a process so far (from /proc: the whole daemon, every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_daemon_cpu(seconds: float = 30.0, interval_s: float = 0.5) -> dict:
    """CPU of the whole daemon (the real `gauge-agent run` process: sampling, outputs, outbox,
    uploader) per sample in Normal, uploading to the reference receiver against store only.
    The default 10 s interval with batch_s = 60 is compressed to `interval_s` with batch_s six
    intervals: the same readings per delivery, in bench time. CPU from /proc over `seconds`
    after the daemon has settled."""
    root = Path(__file__).resolve().parent.parent
    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        directory = Path(directory)
        receiver, port = _start_receiver(directory)
        try:
            time.sleep(1.0)
            for label, uplink in (
                ("store_only", ""),
                (
                    "uploading",
                    f'[uplink]\nurl = "http://127.0.0.1:{port}/ingest"\n'
                    f'token_file = "{directory / "token"}"\nbatch_s = {6 * interval_s}\n',
                ),
            ):
                base = directory / label
                (base / "state").mkdir(parents=True)
                config = base / "config.toml"
                config.write_text(
                    f'[station]\nid = "bench-01"\n'
                    f'[storage]\nstate_dir = "{base / "state"}"\nruntime_dir = "{base / "run"}"\n'
                    f"[sensor]\ninterval_s = {interval_s}\nalarm_interval_s = {interval_s}\n"
                    '[sensor.simulated]\nscenario = "calm"\nspike_probability = 0.0\n'
                    "no_echo_probability = 0.0\n" + uplink
                )
                process = subprocess.Popen(
                    [sys.executable, "-m", "agent", "run", "--simulate", "--config", str(config)],
                    cwd=root,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
                )
                status = base / "run" / "status.json"
                try:
                    deadline = time.monotonic() + 60
                    while _samples(status) < 10:
                        if process.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(f"the daemon did not sample ({label})")
                        time.sleep(0.05)
                    cpu, samples = _process_cpu_s(process.pid), _samples(status)
                    time.sleep(seconds)
                    cpu = _process_cpu_s(process.pid) - cpu
                    samples = _samples(status) - samples
                    results[label] = cpu / samples * 1e6
                    if uplink:  # it really delivered, in batches, all along
                        uploaded = json.loads(status.read_text())["uplink"]
                        if uploaded["delivered"] < samples:
                            raise RuntimeError(f"the daemon did not upload: {uploaded}")
                finally:
                    process.terminate()
                    process.wait(30)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    return {"store_only_us": results["store_only"], "uploading_us": results["uploading"]}


def _samples(status: Path) -> int:
    try:
        return int(json.loads(status.read_text())["samples"])
    except (OSError, ValueError, KeyError):
        return 0


def disk_note() -> str:
    return shutil.disk_usage(os.environ.get("BENCH_DIR") or tempfile.gettempdir()).__repr__()
