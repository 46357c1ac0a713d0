"""How fast could a pure-Python replay be? An upper bound, for issue #13's 300,000 rows/s.

One pass over the recording doing the least a replay must: the csv module, the ISO time and
the float, and for every row the state updates a quiet sample makes in this design (the
gate's window of recent levels and the height it follows, the rolling median, the running
sums of the rate of rise, the fault deadlines, the engine's threshold and rate checks, the
peak), all written out in one loop over local variables: no method call, no Measurement, no
event, no check of anything that is not quiet. A real quiet-run path could only do more, so
its speed is at most this. Not the replay: nothing here is used by it or tested as it.
"""

from __future__ import annotations

import csv
import datetime as dt
from bisect import bisect_left, insort
from collections import deque
from pathlib import Path

from agent.config import Config


def quiet_loop(path: Path, config: Config, value_column: int = 1) -> int:
    """Rows read (distance in metres in `value_column`, ISO times in column 0)."""
    noise = config.filter.noise_m
    median_size = config.filter.window
    reference_size = 5  # agent.gate.REFERENCE_SAMPLES
    rate_window_s = config.alarm.rate.window_s
    rise = config.alarm.rate.rise_m_per_h
    first_threshold = config.alarm.levels[0].above_m
    elevation = config.calibration.sensor_elevation_m
    stale_after = config.alarm.stale_after_s
    stuck_after = config.filter.stuck_after_s
    stuck_tolerance = config.filter.stuck_tolerance_m
    parse_time = dt.datetime.fromisoformat

    gate_window: deque[float] = deque()
    gate_sorted: list[float] = []
    path_point = [0.0, 0.0, 0.0, 0]  # the height the gate follows: level, first, last, count
    median_window: deque[float] = deque()
    median_sorted: list[float] = []
    points: deque[tuple[float, float]] = deque()
    n, st, sv, stt, stv = 0, 0.0, 0.0, 0.0, 0.0
    t_ref = None
    last_valid = stuck_since = deadline = 0.0
    stuck_value = None
    rows = rising = 0
    peak = float("-inf")
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            rows += 1
            now = parse_time(row[0]).timestamp()
            text = row[value_column]
            if deadline <= now:  # the engine's run_until: nothing due in a quiet run
                deadline = now + stale_after
            if not text:
                continue
            level = elevation - float(text)
            if t_ref is None:
                t_ref = now
            # the gate: follow the water
            if len(gate_window) >= reference_size:
                del gate_sorted[bisect_left(gate_sorted, gate_window.popleft())]
            gate_window.append(level)
            insort(gate_sorted, level)
            reference = gate_sorted[(len(gate_sorted) - 1) // 2]
            if abs(path_point[0] - reference) <= noise:
                path_point[2] = now
                path_point[3] += 1
            else:
                path_point = [reference, now, now, 1]
            # the rolling median
            if len(median_window) >= median_size:
                del median_sorted[bisect_left(median_sorted, median_window.popleft())]
            median_window.append(level)
            insort(median_sorted, level)
            middle = len(median_sorted) // 2
            smoothed = (
                median_sorted[middle]
                if len(median_sorted) % 2
                else (median_sorted[middle - 1] + median_sorted[middle]) / 2.0
            )
            # the rate of rise
            points.append((now, smoothed))
            x = now - t_ref
            n += 1
            st += x
            sv += smoothed
            stt += x * x
            stv += x * smoothed
            horizon = now - rate_window_s
            while points[0][0] < horizon:
                old_t, old_v = points.popleft()
                x = old_t - t_ref
                n -= 1
                st -= x
                sv -= old_v
                stt -= x * x
                stv -= x * old_v
            rate = None
            if n >= 3 and now - points[0][0] >= rate_window_s / 2:
                denominator = n * stt - st * st
                if denominator > 0:
                    rate = (n * stv - st * sv) / denominator * 3600.0
            # the fault monitor
            last_valid = now
            if stuck_value is None or abs(level - stuck_value) > stuck_tolerance:
                stuck_value, stuck_since = level, now
            deadline = min(last_valid + stale_after, stuck_since + stuck_after)
            # the engine
            if smoothed >= first_threshold or (rate is not None and rate >= rise):
                rising += 1
            if smoothed > peak:
                peak = smoothed
    return rows
