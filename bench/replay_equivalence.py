"""Same events, byte for byte: replay every development recording (../shared/data) and a
synthetic year with ISO times through this tree and through another revision, and compare.

A change made for speed (issue #13) must not change a single event. Usage:

    python bench/replay_equivalence.py [REV]      # REV defaults to origin/main, else HEAD~1

Exits 1 and shows the first differing line of the first recording that differs.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.recordings import (  # noqa: E402
    FLOODNET_STREET_MM,
    USGS_RIVER_RATE,
    USGS_STATIONS,
    floodnet_settings,
    usgs_settings,
)

DATA = Path(os.environ.get("GAUGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
LEVELS = (
    'alarm.levels=[{name="waspada",above_m=7.5},{name="siaga",above_m=7.9},'
    '{name="awas",above_m=8.5}]'
)


def recordings(directory: Path) -> list[tuple[str, list[str]]]:
    """(name, replay arguments) for each recording and the synthetic year."""
    runs = []
    for name, street_mm in FLOODNET_STREET_MM.items():
        path = DATA / f"floodnet_{name}.csv"
        if path.exists():
            runs.append((name, [str(path), *floodnet_settings(street_mm)]))
    usgs = DATA / "usgs_tax_day_2016.csv"
    if usgs.exists():
        for station in USGS_STATIONS:
            runs.append(
                (
                    f"usgs_{station}",
                    [str(usgs), *usgs_settings(station)]
                    + ["--set", USGS_RIVER_RATE, "--set", "alarm.stale_after_s=1800"]
                    + ["--set", "filter.reject_to_fault_s=3600"],
                )
            )
    year = directory / "year_iso.csv"
    write_synthetic_year(year, 300_000)
    runs.append(
        (
            "synthetic_iso",
            [
                str(year),
                "--value-column",
                "distance_m",
                "--value-kind",
                "distance",
                "--set",
                LEVELS,
            ],
        )
    )
    return runs


def write_synthetic_year(path: Path, count: int) -> None:
    from bench.run import synthetic_levels

    with open(path, "w", encoding="utf-8") as handle:
        handle.write("time,distance_m\n")
        for t, value in synthetic_levels(count):
            moment = dt.datetime.fromtimestamp(t, dt.UTC).isoformat()
            handle.write(f"{moment},{'' if value is None else f'{value:.4f}'}\n")


def replay(tree: Path, arguments: list[str]) -> bytes:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "--lang", "en", "replay", *arguments],
        cwd=tree,
        capture_output=True,
        check=True,
    )
    return result.stdout


def main() -> int:
    revision = sys.argv[1] if len(sys.argv) > 1 else None
    if revision is None:
        known = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "origin/main"], cwd=ROOT, capture_output=True
        )
        revision = "origin/main" if known.returncode == 0 else "HEAD~1"
    with tempfile.TemporaryDirectory() as directory:
        other = Path(directory) / "other"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(other), revision],
            cwd=ROOT,
            check=True,
        )
        try:
            failed = 0
            for name, arguments in recordings(Path(directory)):
                ours, theirs = replay(ROOT, arguments), replay(other, arguments)
                lines = ours.count(b"\n")
                if ours == theirs:
                    print(f"same   {name}: {lines} events")
                    continue
                failed += 1
                for number, (a, b) in enumerate(
                    zip(ours.splitlines(), theirs.splitlines(), strict=False), 1
                ):
                    if a != b:
                        print(f"DIFFER {name}: event {number}\n  here:  {a!r}\n  {revision}: {b!r}")
                        break
                else:
                    there = theirs.count(b"\n")
                    print(f"DIFFER {name}: {lines} events here, {there} there")
            return 1 if failed else 0
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
