"""What the fault-injection tests share: a gauge configuration for a given upstream, the
reference receiver as its own process, and the ledger that says where every record the
gauge ever committed went (upstream, dead letters, still queued, or nowhere: lost)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, free_port, wait_for

STATION = "benanga-01"
TOKEN = "reliability-token-0123456789"


def gauge_config(
    tmp_path: Path,
    url: str,
    scenario: str = "calm",
    time_scale: float = 1.0,
    batch_max: int = 50,
    extra: str = "",
    interval_s: float = 0.1,
    backoff_max_s: float = 1.0,
) -> Path:
    """A daemon sampling every `interval_s` (10 times a second) on the simulated sensor,
    uploading to `url` with short back-offs (so a test sees several retries), its state under
    tmp_path. `extra` is appended TOML (whole tables)."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[station]
id = "{STATION}"
[sensor]
interval_s = {interval_s}
alarm_interval_s = {interval_s}
burst = 2
[sensor.simulated]
scenario = "{scenario}"
time_scale = {time_scale}
[filter]
max_rate_m_per_min = 1000.0
[uplink]
url = "{url}"
token_file = "{token}"
batch_max = {batch_max}
heartbeat_s = 1.0
backoff_max_s = {backoff_max_s}
auth_pause_s = 1.0
connect_timeout_s = 1.0
read_timeout_s = 1.0
request_deadline_s = 2.0
[storage]
state_dir = "{tmp_path / "state"}"
runtime_dir = "{tmp_path / "run"}"
{extra}
""",
        encoding="utf-8",
    )
    return config


class ReceiverProcess:
    """`python -m agent.receiver` on a given port, as the city would run it."""

    def __init__(self, tmp_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.db = tmp_path / "receiver.sqlite"
        tokens = tmp_path / "receiver-tokens"
        tokens.write_text(f"{STATION} {TOKEN}\n")
        tokens.chmod(0o600)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.receiver",
                "--port",
                str(self.port),
                "--db",
                str(self.db),
                "--token-file",
                str(tokens),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(self._healthy, 20, "the receiver to answer /health")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the receiver exited: {self.process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                return True
        except OSError:
            return False

    def arrivals(self) -> list[tuple[int, str]]:
        """(seq, type) in the order the receiver stored them."""
        with sqlite3.connect(self.db) as database:
            return database.execute(
                "SELECT seq, type FROM records ORDER BY received, seq"
            ).fetchall()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Ledger:
    """Where each record the outbox ever committed (seq 1..last) is."""

    last: int
    upstream: list[int]  # in arrival order
    upstream_types: list[str]  # the same records' types
    dead_letters: list[int]
    queued: list[int]
    dropped_for_backlog: int

    def out_of_order(self) -> list[tuple[int, int]]:
        """Pairs (earlier, later) that arrived the wrong way round. Alarm events jump the
        queue by design, so events are in order among themselves, and readings and
        heartbeats among themselves."""
        wrong = []
        for events in (True, False):
            seqs = [
                seq
                for seq, kind in zip(self.upstream, self.upstream_types)
                if (kind == "event") == events
            ]
            wrong += [(a, b) for a, b in zip(seqs, seqs[1:]) if b <= a]
        return wrong

    @property
    def lost(self) -> list[int]:
        accounted = set(self.upstream) | set(self.dead_letters) | set(self.queued)
        return [seq for seq in range(1, self.last + 1) if seq not in accounted]


def ledger(state_dir: Path, receiver: ReceiverProcess) -> Ledger:
    """Read after the daemon stopped: its outbox file and the receiver's database."""
    with sqlite3.connect(state_dir / "outbox.sqlite") as outbox:
        assert outbox.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        meta = dict(outbox.execute("SELECT key, value FROM meta"))
        queued = [
            seq
            for (seq,) in outbox.execute("SELECT seq FROM events UNION SELECT seq FROM readings")
        ]
        dead = [seq for (seq,) in outbox.execute("SELECT seq FROM dead_letters")]
    with sqlite3.connect(receiver.db) as database:
        arrivals = database.execute(
            "SELECT seq, type FROM records WHERE station = ? AND epoch = ? ORDER BY received, seq",
            (STATION, meta["epoch"]),
        ).fetchall()
    # high_water marks the highest seq ever deleted; what is still queued may lie above it.
    last = max([int(meta["high_water"]), *queued, *dead])
    return Ledger(
        last,
        [seq for seq, _ in arrivals],
        [kind for _, kind in arrivals],
        dead,
        queued,
        int(meta["dropped"]),
    )


def dead_letter_texts(state_dir: Path) -> list[str]:
    with sqlite3.connect(state_dir / "outbox.sqlite") as outbox:
        return [json.dumps(row) for row in outbox.execute("SELECT * FROM dead_letters")]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def stop_daemon(process: subprocess.Popen, log_path: Path, timeout: float = 15) -> None:
    """SIGTERM, and the daemon must stop cleanly (its log, written to `log_path`, says why
    not)."""
    process.terminate()
    process.wait(timeout=timeout)
    assert process.returncode == 0, log_path.read_text()[-3000:]


def queued(status: dict) -> float:
    """The daemon's queue depth; infinite until it has counted the queue after starting (the
    status says null then), so "queued(s) <= 3" never passes on a count not yet made."""
    depth = (status.get("outbox") or {}).get("depth")
    return float("inf") if depth is None else depth
