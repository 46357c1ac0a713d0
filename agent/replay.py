"""Replay a recording through the same pipeline and alarm engine the daemon uses.

Time is the recording's own: delays and faults fire at the moment they would have fired live,
also inside gaps (the engine's deadlines are run before each row). Field files are messy, so no
row stops a replay: each problem is counted and reported in the summary on stderr, and a value
that is not a number is "no reading".
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import re
import sys
import time as time_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from agent.alarm import AlarmEngine, Event
from agent.config import Config
from agent.errors import ReplayInputError, UnreadableFile
from agent.files import open_regular
from agent.i18n import _
from agent.pipeline import (
    ACQUIRING,
    FALSE_ECHO,
    IMPLAUSIBLE,
    NOT_A_NUMBER,
    UNCONFIRMED,
    Measurement,
    Pipeline,
)
from agent.units import UNIT_TO_M, format_utc


@dataclass
class ReplayOptions:
    time_column: str = "time"
    value_column: str = "level"
    value_kind: str = "level"
    unit: str = "m"
    where: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ReplayCounts:
    rows: int = 0  # data rows read (not the header)
    samples: int = 0  # rows that reached the pipeline
    accepted: int = 0
    no_reading: int = 0  # not a number, sensor codes, out of range
    implausible: int = 0  # faster than the site allows, or at a height already refused
    false_echo: int = 0  # at the height of a learned false echo
    unconfirmed: int = 0  # jumps across a silence, waiting for the next reading
    withdrawn: int = 0  # believed (or waiting) at first, then shown not to be the water
    acquiring: int = 0  # start-up readings before the gate has a level to compare with
    blank: int = 0
    filtered_out: int = 0  # not matching --where
    malformed: int = 0  # missing or extra columns
    bad_time: int = 0
    out_of_order: int = 0
    duplicate_time: int = 0
    events: int = 0
    first_time: float | None = None
    last_time: float | None = None
    peak_m: float | None = None
    peak_time: float | None = None
    siren_on_s: float = 0.0
    time_in_state: dict[str, float] = field(default_factory=dict)
    false_echoes: list[str] = field(default_factory=list)  # learned, in words

    def summary(self) -> str:
        """One line for a person (stderr, translated); the events on stdout are the record."""
        span = (
            _("{first} to {last}").format(
                first=format_utc(self.first_time), last=format_utc(self.last_time)
            )
            if self.first_time is not None and self.last_time is not None
            else _("no samples")
        )
        peak = (
            _("peak {level} m at {time}").format(
                level=f"{self.peak_m:.3f}", time=format_utc(self.peak_time)
            )
            if self.peak_m is not None and self.peak_time is not None
            else _("no accepted level")
        )
        states = ", ".join(
            _("{state} {hours} h").format(state=name, hours=f"{seconds / 3600:.1f}")
            for name, seconds in self.time_in_state.items()
            if seconds > 0
        )
        echoes = (
            "; " + _("false echoes: {echoes}").format(echoes=", ".join(self.false_echoes))
            if self.false_echoes
            else ""
        )
        return (
            _(
                "replay: {rows} rows, {samples} samples ({accepted} accepted,"
                " {acquiring} acquiring, {no_reading} no reading, {implausible} implausible,"
                " {false_echo} false echo, {unconfirmed} unconfirmed, {withdrawn} withdrawn);"
                " skipped {blank} blank, {filtered_out} filtered out, {malformed} malformed,"
                " {bad_time} bad time, {out_of_order} out of order, {duplicate_time} duplicate"
                " time; {span}; {peak}; {events} events; siren on {siren_h} h; {states}"
            ).format(
                rows=self.rows,
                samples=self.samples,
                accepted=self.accepted,
                acquiring=self.acquiring,
                no_reading=self.no_reading,
                implausible=self.implausible,
                false_echo=self.false_echo,
                unconfirmed=self.unconfirmed,
                withdrawn=self.withdrawn,
                blank=self.blank,
                filtered_out=self.filtered_out,
                malformed=self.malformed,
                bad_time=self.bad_time,
                out_of_order=self.out_of_order,
                duplicate_time=self.duplicate_time,
                span=span,
                peak=peak,
                events=self.events,
                siren_h=f"{self.siren_on_s / 3600:.2f}",
                states=states or _("no time in any state"),
            )
            + echoes
        )


@dataclass
class Trace:
    """What a plot needs, kept only when one is asked for."""

    times: list[float] = field(default_factory=list)
    levels: list[float | None] = field(default_factory=list)
    smoothed: list[float | None] = field(default_factory=list)
    accepted: list[bool] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    withdrawn: list[bool] = field(default_factory=list)  # filled in when the gate withdraws
    warning: list[int] = field(default_factory=list)
    siren: list[bool] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    false_echoes: list[float] = field(default_factory=list)  # learned, as levels


# Numbers as loggers write them: ASCII digits, one sign, one decimal point, an exponent.
# Python's float() also takes "7_5" (75), "١٢" (Arabic-Indic digits), "nan" and "inf", which no
# logger writes and which could sound a false Awas: they are "no reading" here.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Times a replay can stand for: 1900 to 2100 (also keeps every later date conversion in range).
EARLIEST_TIME = -2208988800.0
LATEST_TIME = 4102444800.0


def parse_value(text: str) -> float | None:
    """A number as loggers write it (see _NUMBER), or None.

    float() does the work: among ASCII strings without "_", what it accepts and _NUMBER does not
    are only "nan" and "inf" spellings (refused by the finiteness check) and surrounding
    whitespace (allowed anyway). This runs twice a row in a replay; tests/test_replay.py holds
    it equal to _NUMBER.fullmatch over arbitrary text."""
    # Stripped as str.strip does (it also takes \x1c-\x1f and a no-break space, which
    # float() does not), then float() under the grammar.
    text = text.strip()
    if not text.isascii() or "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_time(text: str) -> float | None:
    """ISO 8601 with offset or Z (naive = UTC), or epoch seconds. None if it is neither."""
    text = text.strip()
    if not text or not text.isascii():
        return None
    # ISO first: real recordings carry ISO times (both in ../shared/data do). "YYYY-" cannot
    # be a number, so this never takes an epoch time for a date.
    if len(text) >= 10 and text[4] == "-" and text[:4].isdigit():
        moment_s = _iso_seconds(text)
    else:
        moment_s = parse_value(text)
        if moment_s is None:
            moment_s = _iso_seconds(text)  # the rarer forms: "20240101T000000Z", week dates
    if moment_s is None:
        return None
    return moment_s if EARLIEST_TIME <= moment_s <= LATEST_TIME else None


def _iso_seconds(text: str) -> float | None:
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        return None


def _open_text(path: Path) -> IO[str]:
    """The recording as text; `-` is standard input. Only regular files: a FIFO or a device
    would make replay wait or read for ever."""
    if str(path) == "-":
        return io.TextIOWrapper(
            sys.stdin.buffer, encoding="utf-8-sig", errors="replace", newline=""
        )
    try:
        fd = open_regular(path)
    except UnreadableFile as error:
        raise ReplayInputError(str(error)) from None
    handle = os.fdopen(fd, "rb")
    if handle.peek(2)[:2] in (b"\xff\xfe", b"\xfe\xff"):
        handle.close()
        raise ReplayInputError(
            _(
                '{path}: is UTF-16 text (Excel\'s "Unicode Text"); save it as "CSV UTF-8" and'
                " replay that"
            ).format(path=path)
        )
    return io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace", newline="")


def _csv_rows(handle: IO[str], path: Path, counts: ReplayCounts) -> Iterator[list[str]]:
    """csv.reader over the file, where a NUL byte, a field past the csv module's limit or a
    read error is a counted bad row or a one-line error, never a traceback."""
    reader = csv.reader(line.replace("\0", "") for line in handle)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            counts.rows += 1
            counts.malformed += 1
        except OSError as error:
            raise ReplayInputError(
                _("{path}: cannot be read ({reason})").format(
                    path=path, reason=error.strerror or error
                )
            ) from None


def _column(header: list[str], name: str, option: str, path: Path) -> int:
    """The index of column `name`, or an error naming the option (`--time-column`...) that
    chose it."""
    try:
        return header.index(name)
    except ValueError:
        columns = ", ".join(repr(c) for c in header if c)
        if len(columns) > 200:  # a binary file's "header": one line, not a screenful
            columns = columns[:200] + ", ..."
        raise ReplayInputError(
            _("{path}: no column {name} (columns: {columns}); choose one with {option}").format(
                path=path, name=repr(name), columns=columns, option=option
            )
        ) from None


class Replay:
    _warning_name = "normal"

    def __init__(self, config: Config, options: ReplayOptions, keep_trace: bool = False):
        self.config = config
        self.options = options
        self.pipeline = Pipeline(config, options.value_kind, UNIT_TO_M[options.unit])
        self.engine: AlarmEngine | None = None
        self.counts = ReplayCounts()
        self.trace = Trace() if keep_trace else None
        self._state_since: float | None = None
        self._siren_since: float | None = None

    def rows(self, path: Path) -> Iterator[tuple[float, float | None]]:
        """(time, raw value or None) for each usable row, in time order; counts the rest."""
        options, counts = self.options, self.counts
        with _open_text(path) as handle:
            reader = _csv_rows(handle, path, counts)
            header = next(reader, None)
            if header is None:
                raise ReplayInputError(
                    _("{path}: empty file (a header row is needed)").format(path=path)
                )
            header = [name.strip() for name in header]
            time_index = _column(header, options.time_column, "--time-column", path)
            value_index = _column(header, options.value_column, "--value-column", path)
            filters = [
                (_column(header, column, "--where", path), wanted)
                for column, wanted in options.where
            ]
            width = len(header)
            last_time: float | None = None
            for row in reader:
                counts.rows += 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    counts.blank += 1
                    continue
                if len(row) != width:
                    counts.malformed += 1
                    continue
                if filters and any(row[i].strip() != wanted for i, wanted in filters):
                    counts.filtered_out += 1
                    continue
                moment = parse_time(row[time_index])
                if moment is None:
                    counts.bad_time += 1
                    continue
                if last_time is not None and moment <= last_time:
                    if moment == last_time:
                        counts.duplicate_time += 1
                    else:
                        counts.out_of_order += 1
                    continue
                last_time = moment
                yield moment, parse_value(row[value_index])

    def run(
        self,
        path: Path,
        emit: Callable[[Event], None],
        progress: Callable[[ReplayCounts], None] | None = None,
    ) -> ReplayCounts:
        return self.feed(self.rows(path), emit, progress)

    def feed(
        self,
        rows: Iterable[tuple[float, float | None]],
        emit: Callable[[Event], None],
        progress: Callable[[ReplayCounts], None] | None = None,
    ) -> ReplayCounts:
        """Drive the pipeline and engine with (time, raw value or None) in time order."""
        counts = self.counts
        pipeline = self.pipeline
        engine: AlarmEngine | None = None
        trace = self.trace
        for moment, raw in rows:
            if engine is None:
                engine = self.engine = AlarmEngine(self.config, moment)
                counts.first_time = moment
                self._state_since = moment
            for event in engine.run_until(moment):
                self._emit(event, emit)
            if raw is None:
                measurement = pipeline.process(moment, None, NOT_A_NUMBER)
            else:
                measurement = pipeline.process(moment, raw)
            self._count(measurement)
            for event in engine.update(measurement):
                self._emit(event, emit)
            if trace is not None:
                trace.times.append(moment)
                trace.levels.append(measurement.level_m)
                trace.smoothed.append(measurement.smoothed_m if measurement.accepted else None)
                trace.accepted.append(measurement.accepted)
                trace.reasons.append(measurement.reason)
                trace.withdrawn.append(False)
                if measurement.withdrawn_since is not None:
                    _mark_withdrawn(trace, measurement.withdrawn_since)
                trace.warning.append(engine.warning)
                trace.siren.append(engine.siren_pattern != "off")
            if progress is not None and counts.samples % 20000 == 0:
                progress(counts)
        self._close_spans()
        gate = pipeline.gate
        counts.withdrawn = gate.withdrawn_count
        learned = gate.echoes.learned()
        counts.false_echoes = [self._describe_echo(echo) for echo in learned]
        if trace is not None:
            trace.false_echoes = [echo.level_m for echo in learned]
        return counts

    def _describe_echo(self, echo) -> str:
        where = _("level {level} m").format(level=f"{echo.level_m:.3f}")
        validity = self.pipeline.validity
        if validity.is_distance:
            distance = (validity.elevation_m - echo.level_m) / validity.unit_to_m
            digits = {"m": 3, "cm": 1, "mm": 0, "ft": 2}.get(self.options.unit, 3)
            where = _("{distance} {unit} from the sensor ({level})").format(
                distance=f"{distance:.{digits}f}", unit=self.options.unit, level=where
            )
        return _("{where} seen {count} times, longest {hours} h").format(
            where=where, count=echo.episodes, hours=f"{echo.longest_s / 3600:.1f}"
        )

    def _count(self, measurement: Measurement) -> None:
        counts = self.counts
        counts.samples += 1
        counts.last_time = measurement.time
        if measurement.accepted:
            counts.accepted += 1
            level = measurement.smoothed_m
            assert level is not None, "an accepted reading has a smoothed level"
            if counts.peak_m is None or level > counts.peak_m:
                counts.peak_m, counts.peak_time = level, measurement.time
        elif measurement.reason == IMPLAUSIBLE:
            counts.implausible += 1
        elif measurement.reason == FALSE_ECHO:
            counts.false_echo += 1
        elif measurement.reason == UNCONFIRMED:
            counts.unconfirmed += 1
        elif measurement.reason == ACQUIRING:
            counts.acquiring += 1
        else:
            counts.no_reading += 1

    def _emit(self, event: Event, emit: Callable[[Event], None]) -> None:
        self.counts.events += 1
        if event.kind in ("level", "rate"):
            self._account_state(event.time, event)
        if event.kind == "siren":
            if event.data["pattern"] == "off":
                if self._siren_since is not None:
                    self.counts.siren_on_s += event.time - self._siren_since
                self._siren_since = None
            elif self._siren_since is None:
                self._siren_since = event.time
        if self.trace is not None:
            self.trace.events.append(event)
        emit(event)

    def _account_state(self, now: float, event: Event) -> None:
        """Time spent in each warning state (the threshold state lifted by the rate alarm)."""
        engine = self.engine
        assert engine is not None, "events come from the engine"
        # The engine has already changed when the event is emitted; the span that ends now
        # belonged to the warning before it.
        previous = self._warning_name
        if self._state_since is not None:
            spent = self.counts.time_in_state
            spent[previous] = spent.get(previous, 0.0) + now - self._state_since
        self._state_since = now
        self._warning_name = engine.warning_name

    def _close_spans(self) -> None:
        end = self.counts.last_time
        if end is None:
            return
        if self._state_since is not None:
            spent = self.counts.time_in_state
            spent[self._warning_name] = spent.get(self._warning_name, 0.0) + end - self._state_since
        if self._siren_since is not None:
            self.counts.siren_on_s += end - self._siren_since


def _mark_withdrawn(trace: Trace, since: float) -> None:
    """The gate no longer believes what it took (or was waiting to take) since `since`."""
    for index in range(len(trace.times) - 2, -1, -1):
        if trace.times[index] < since:
            break
        if trace.accepted[index] or trace.reasons[index] == UNCONFIRMED:
            trace.withdrawn[index] = True


def run_replay(
    path: Path,
    config: Config,
    options: ReplayOptions,
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
    plot_path: Path | None = None,
) -> ReplayCounts:
    """The `gauge-agent replay` command: JSON lines to `out`, progress and summary to `err`."""
    replay = Replay(config, options, keep_trace=plot_path is not None)
    show_progress = getattr(err, "isatty", lambda: False)()
    started = time_module.monotonic()

    def progress(counts: ReplayCounts) -> None:
        at = format_utc(counts.last_time) if counts.last_time is not None else "-"
        line = _("replay: {samples} samples, at {time}, {events} events")
        err.write("\r" + line.format(samples=counts.samples, time=at, events=counts.events))
        err.flush()

    def emit(event: Event) -> None:
        out.write(event.to_json())
        out.write("\n")

    counts = replay.run(path, emit, progress if show_progress else None)
    if show_progress:
        err.write("\r\033[K")
    elapsed = time_module.monotonic() - started
    err.write(f"{counts.summary()}; {elapsed:.1f} s\n")
    if plot_path is not None:
        from agent.plot import plot_replay  # matplotlib only when a plot is asked for

        plot_replay(plot_path, config, replay.trace, counts, title=f"{path.name}")
        err.write(_("replay: plot written to {path}").format(path=plot_path) + "\n")
    return counts
