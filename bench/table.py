"""The README's benchmark table, from several runs of bench/run.py (issue #13: every target
shown over three runs as min / median / max of the ratio).

    scripts/bench table [--runs 3] [--write-readme]     # run bench/run.py that many times
    scripts/bench table --from a.jsonl b.jsonl c.jsonl  # or use runs already made

Each run's JSON lines are kept in bench/results/ (named by date and run). The table goes to
stdout, and with --write-readme between the README's bench-table markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def met(line: dict) -> bool | None:
    """Whether one run met its metric's target; None when the metric has none."""
    if "target_ratio" in line:
        return line["ratio"] <= line["target_ratio"]
    if "target_bytes" in line:
        return line["value"] <= line["target_bytes"]
    if "target_ms" in line:
        return line["value"] <= line["target_ms"]
    if "target_samples_per_s" in line:
        return line["value"] >= line["target_samples_per_s"]
    if line["baseline"].startswith("target_"):  # the baseline is itself the target
        return line["value"] >= line["baseline_value"]
    return None


def target_words(line: dict) -> str:
    if "target_ratio" in line:
        return f"ratio <= {line['target_ratio']:g}"
    if "target_bytes" in line:
        return f"<= {line['target_bytes']:g} bytes"
    if "target_ms" in line:
        return f"<= {line['target_ms']:g} ms"
    if "target_samples_per_s" in line:
        return f">= {line['target_samples_per_s']:,.0f} samples/s"
    if line["baseline"].startswith("target_"):
        return f">= {line['baseline_value']:,.0f} {line['unit']}"
    return ""


def spread(values: list[float]) -> str:
    """min / median / max, as few digits as they need."""
    low, middle, high = min(values), statistics.median(values), max(values)
    return " / ".join(_number(v) for v in (low, middle, high))


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(runs: list[list[dict]]) -> str:
    by_metric: dict[str, list[dict]] = {}
    for run in runs:
        for line in run:
            by_metric.setdefault(line["metric"], []).append(line)
    rows = [
        f"| metric ({len(runs)} runs) | value min / median / max | same-run baseline (median)"
        " | ratio min / median / max | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, lines in by_metric.items():
        first = lines[0]
        verdicts = [met(line) for line in lines]
        verdict = (
            ""
            if verdicts[0] is None
            else "yes"
            if all(verdicts) and len(lines) == len(runs)
            else f"no ({sum(bool(v) for v in verdicts)} of {len(runs)})"
        )
        ratios = [line["ratio"] for line in lines if line["ratio"] is not None]
        baseline = statistics.median(line["baseline_value"] for line in lines)
        rows.append(
            f"| `{name}` | {spread([line['value'] for line in lines])} {first['unit']}"
            f" | `{first['baseline']}` {_number(baseline)}"
            f" | {spread(ratios) if ratios else ''} | {target_words(first)} | {verdict} |"
        )
    return "\n".join(rows) + "\n"


def run_benchmarks(count: int, extra: list[str]) -> list[Path]:
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = []
    for index in range(1, count + 1):
        path = RESULTS / f"{stamp}-run{index}.jsonl"
        print(f"run {index} of {count} -> {path.relative_to(ROOT)}", file=sys.stderr)
        with open(path, "w", encoding="utf-8") as out:
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "run.py"), *extra],
                stdout=out,
                check=True,
                cwd=ROOT,
            )
        paths.append(path)
    return paths


def write_readme(text: str) -> None:
    readme = ROOT / "README.md"
    content = readme.read_text(encoding="utf-8")
    if START not in content or END not in content:
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}{END}{tail}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--from", dest="sources", nargs="+", type=Path, default=[])
    parser.add_argument("--write-readme", action="store_true")
    args, extra = parser.parse_known_args()
    paths = args.sources or run_benchmarks(args.runs, extra)
    runs = [
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        for path in paths
    ]
    text = table(runs)
    sys.stdout.write(text)
    if args.write_readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
