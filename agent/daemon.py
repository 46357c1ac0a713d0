"""The gauge daemon: the only place where sensor, pipeline, engine and outputs are wired together.

Two threads:
- the sampling thread (the caller's) reads the sensor every `interval_s` (`alarm_interval_s`
  while a warning is up), runs the pipeline and the engine, and sleeps exactly until the next
  sample or the engine's next deadline, whichever is first;
- the output thread renders the annunciator and writes the pins, then sleeps until the next
  blink or pattern edge or until the alarm changes, so the siren keeps its pattern even while a
  sensor read is slow, follows a decision within a millisecond, and an idle gauge sleeps.
Nothing on the alarm path waits for the network, the disk or the wall clock: the engine runs on
the monotonic clock, and a status file that cannot be written is logged, not fatal.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import logging
import os
import select
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent import __version__
from agent import clock as host_clock
from agent.alarm import AlarmEngine, Event
from agent.annunciator import Annunciator
from agent.config import Config, load_config
from agent.errors import ConfigError, GaugeError
from agent.outbox import EVENT, HEARTBEAT, READING, SALVAGE_PREFIX, Outbox
from agent.pipeline import Measurement, Pipeline
from agent.sensors import RawRead, SensorDriver, open_sensor
from agent.statelock import StateLock
from agent.status import StatusWriter
from agent.supervision import LoopThread, ThreadHealth
from agent.systemd import Notifier
from agent.units import format_utc
from agent.uplink import Uploader

log = logging.getLogger("gauge-agent")

EDGE_MARGIN_S = 0.001  # the output thread wakes this long after a blink or pattern edge
OUTBOX_FILE_NAME = "outbox.sqlite"
WARNING_FILE_NAME = "warning.json"  # in runtime_dir: survives a restart, not a reboot


def describe(event: Event) -> str:
    """One log line per state change, in words a technician reads at a glance."""
    data = event.data
    if event.kind == "level":
        level = data["level_m"]
        at = f" at {level:.3f} m" if level is not None else ""
        return f"level {data['state'].upper()} (was {data['previous']}){at}"
    if event.kind == "rate":
        rate = data["rise_m_per_h"]
        rate_text = f"{rate:+.3f} m/h" if rate is not None else "unknown"
        return f"rate alarm {'ON' if data['active'] else 'off'} ({rate_text})"
    if event.kind == "fault":
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"fault {data['fault']} {'RAISED' if data['active'] else 'cleared'}{reason}"
    if event.kind == "siren":
        return f"siren {data['pattern']}"
    return f"{event.kind} {data}"


class Daemon:
    def __init__(
        self,
        config: Config,
        sensor: SensorDriver,
        apply_outputs: Callable,
        status: StatusWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        simulated: bool = False,
        notifier: Notifier | None = None,
        outbox: Outbox | None = None,
        uploader: Uploader | None = None,
        storage_problem: str | None = None,
        warning_file: Path | None = None,
        since_boot: Callable[[], float] = host_clock.since_boot,
        boot_id: str | None = None,
        clock_synchronised: Callable[[], bool | None] | None = None,
        health: ThreadHealth | None = None,
    ):
        self.config = config
        self.sensor = sensor
        self.clock = clock
        self.wall = wall
        self.simulated = simulated
        start = clock()
        self.pipeline = Pipeline(config, sensor.value_kind, sensor.unit_to_m)
        self.engine = AlarmEngine(config, start)
        self.annunciator = Annunciator(config, start)
        self.apply_outputs = apply_outputs
        self.health = health or ThreadHealth()
        self.outputs_stop = threading.Event()
        # The outputs keep their pattern even while a sensor read is slow: their own thread.
        # A failing pin write is retried every second, never more slowly.
        self.output_thread = LoopThread(
            "outputs", self._output_step, self.health, self.outputs_stop, backoff_max_s=1.0
        )
        self.status = status
        self.started_wall = wall()
        self.started = start
        self.last: Measurement | None = None
        self.samples = 0
        self.notifier = notifier or Notifier(address="")
        self.outbox = outbox
        self.uploader = uploader
        self.storage_problem = storage_problem  # the outbox could not even be opened
        self.system_faults: set[str] = set()  # storage, auth: not about the water
        self.last_heartbeat: float | None = None
        self.warning_file = warning_file  # where the warning is kept across restarts
        self.salvage_drains: list[tuple[Outbox, Uploader]] = []
        # SIGHUP: reloader(running config) -> a new valid Config, or None to keep running.
        self.reloader: Callable[[Config], Config | None] | None = None
        self.reload_config: Config | None = None
        self.since_boot = since_boot
        self.boot_id = boot_id if boot_id is not None else host_clock.boot_id()
        self.clock_synchronised = clock_synchronised or host_clock.SyncWatch()
        self._restore_warning()

    def _restore_warning(self) -> None:
        """After a restart, keep warning while the gate re-acquires (no silent gap).

        Aged with this boot's own clock, never the wall clock: a Pi without an RTC steps its
        wall clock by hours or days when NTP synchronises, and a saved Awas must not be
        forgotten (or kept for ever) because of that. Saved in another boot (a runtime
        directory that survived a reboot), its age is unknown: it is taken up, and fresh
        readings step it down with the normal off-delay if the water says so."""
        if self.warning_file is None or self.config.alarm.restore_within_s <= 0:
            return
        try:
            saved = json.loads(self.warning_file.read_text(encoding="utf-8"))
            state, rate_active = str(saved["state"]), bool(saved["rate_active"])
            same_boot = saved.get("boot_id") is not None and saved["boot_id"] == self.boot_id
            age = self.since_boot() - float(saved["since_boot_s"]) if same_boot else None
        except (OSError, ValueError, KeyError, TypeError):
            return  # nothing saved, or nothing usable: start from Normal as always
        if age is not None and not 0 <= age <= self.config.alarm.restore_within_s:
            return
        if (state != "normal" or rate_active) and self.engine.restore(state, rate_active):
            when = f"{age:.0f} s ago" if age is not None else "before a reboot"
            log.warning(
                "restored warning %s saved %s (restart during an alarm)",
                self.engine.warning_name.upper(),
                when,
            )

    def _save_warning(self) -> None:
        if self.warning_file is None:
            return
        record = {
            "state": self.engine.state_name,
            "rate_active": self.engine.rate_active,
            "boot_id": self.boot_id,
            "since_boot_s": self.since_boot(),
            "saved_epoch": self.wall(),
        }  # for a person reading the file only
        temporary = self.warning_file.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(record), encoding="utf-8")
            os.replace(temporary, self.warning_file)
        except OSError as error:
            log.warning("warning state not saved to %s: %s", self.warning_file, error.strerror)

    def _output_step(self) -> None:
        """Render, then sleep until the next edge of a blink or pattern, or until the alarm
        changes (the annunciator's `changed`, set by the sampling and button threads)."""
        changed = self.annunciator.changed
        changed.clear()  # before rendering: a change from now on wakes us
        now = self.clock()
        self.apply_outputs(self.annunciator.render(now))
        if self.outputs_stop.is_set():
            return
        wake = self.annunciator.next_change(now)
        # Just past the edge, so that the render there sees the new phase. (A pin write that
        # fails raises: the thread's supervisor retries it within a second.)
        changed.wait(max(0.0, wake - self.clock()) + EDGE_MARGIN_S)

    def _read(self) -> list[RawRead]:
        try:
            return self.sensor.read_burst(self.config.sensor.burst)
        except Exception as error:
            log.warning("sensor read failed: %s", error)
            return [(None, "driver_error")]

    def interval(self) -> float:
        """Fast sampling while a warning is up, and also until the first level is known: after
        a restart during a flood the warning must be back in seconds, not minutes."""
        sensor = self.config.sensor
        engine = self.engine
        # Also while the gate waits for a reading to confirm a jump: it may be the water.
        fast = (
            engine.warning > 0
            or engine.rate_active
            or engine.level_m is None
            or self.pipeline.gate.awaiting_confirmation
        )
        return sensor.alarm_interval_s if fast else sensor.interval_s

    def all_faults(self) -> list[str]:
        return sorted(set(self.engine.active_faults) | self.system_faults)

    def handle(self, events: list[Event]) -> None:
        """Log each event, tell the annunciator, then keep the event for upstream."""
        events = events + self._system_fault_changes()
        for event in events:
            log.log(
                logging.WARNING if event.kind in ("level", "fault") else logging.INFO,
                describe(event),
            )
        if not events:
            return
        now = self.clock()
        self.annunciator.set_alarm(now, self.engine.warning, self.all_faults())
        if any(event.kind in ("level", "rate") for event in events):
            self._save_warning()
        if self.outbox is not None:
            wall_now = self.wall()
            unsynchronised = self.clock_synchronised() is False
            for event in events:
                body = {"kind": event.kind, **event.data}
                if unsynchronised:
                    body["clock_synchronised"] = False
                self.outbox.submit(EVENT, wall_now - (now - event.time), body)
            if self.uploader is not None:
                self.uploader.urgent.set()  # an alarm event cuts any back-off short
                self.uploader.wake.set()  # and any calm-time batching

    def _system_fault_changes(self) -> list[Event]:
        """Faults of the agent itself (card, token, upstream, its own threads) raised and
        cleared as events too."""
        active = set()
        if self.storage_problem or (self.outbox is not None and self.outbox.storage_error):
            active.add("storage")
        if self.uploader is not None and self.uploader.auth_fault:
            active.add("auth")
        if self.uploader is not None and self.uploader.refusing:
            active.add("upstream_refusing")
        if self.health.failing():
            active.add("internal")
        if active == self.system_faults:
            return []
        now = self.clock()
        changes = []
        for fault in sorted(active ^ self.system_faults):
            data = {"fault": fault, "active": fault in active}
            if fault == "internal" and fault in active:
                data["threads"] = self.health.failing()  # which, and the error
            changes.append(Event(now, "fault", data))
        self.system_faults = active
        return changes

    def sample_once(self) -> None:
        now = self.clock()
        self.handle(self.engine.run_until(now))
        measurement = self.pipeline.process_burst(now, self._read())
        self.last = measurement
        self.samples += 1
        self.handle(self.engine.update(measurement))
        # The alarm decision is made and the siren told: now keep the reading for upstream.
        if self.outbox is not None:
            self.outbox.submit(READING, self.wall(), self.reading_record(measurement))
            if self.uploader is not None:
                self.uploader.new_reading(live=self.engine.warning > 0 or self.engine.rate_active)
            self._heartbeat_if_due(now, self.outbox)
        if self.status is not None:
            self.status.write(self.status_record())

    def reading_record(self, measurement: Measurement) -> dict:
        engine = self.engine
        record = {
            "level_m": None if engine.level_m is None else round(engine.level_m, 4),
            "reading_m": None if measurement.level_m is None else round(measurement.level_m, 4),
            "raw": measurement.raw,
            "raw_unit": self.sensor.unit,
            "ok": measurement.accepted,
            "reason": measurement.reason,
            "state": engine.state_name,
            "warning": engine.warning_name,
            "rate_m_per_h": None if engine.rate_m_per_h is None else round(engine.rate_m_per_h, 4),
        }
        if self.clock_synchronised() is False:
            # Stamped by a clock that has not been set since boot (no RTC): upstream must not
            # trust `time`; the order of `seq` still holds.
            record["clock_synchronised"] = False
        return record

    def false_echoes(self) -> list[dict]:
        """What the gate learned not to believe, for the technician (status) and upstream."""
        validity = self.pipeline.validity
        echoes = []
        for echo in self.pipeline.gate.echoes.learned():
            entry = {
                "level_m": round(echo.level_m, 3),
                "episodes": echo.episodes,
                "longest_s": round(echo.longest_s, 1),
                "last_seen_s_ago": round(self.clock() - echo.last_seen, 1),
            }
            if validity.is_distance:
                entry["distance_m"] = round(validity.elevation_m - echo.level_m, 3)
            echoes.append(entry)
        return echoes

    def _heartbeat_if_due(self, now: float, outbox: Outbox) -> None:
        if (
            self.last_heartbeat is not None
            and now - self.last_heartbeat < self.config.uplink.heartbeat_s
        ):
            return
        self.last_heartbeat = now
        outbox.submit(HEARTBEAT, self.wall(), self.heartbeat_record(now))

    def heartbeat_record(self, now: float) -> dict:
        stats = self.outbox.stats() if self.outbox is not None else {}
        return {
            "uptime_s": round(now - self.started, 1),
            "version": __version__,
            "queue_depth": stats.get("depth"),
            "dropped": stats.get("dropped"),
            "dead_lettered": stats.get("dead_lettered"),
            "disk_free_mb": _disk_free_mb(Path(self.config.storage.state_dir)),
            "cpu_temp_c": _cpu_temperature_c(),
            "clock_synchronised": self.clock_synchronised(),
            "state": self.engine.state_name,
            "warning": self.engine.warning_name,
            "faults": self.all_faults(),
            "false_echo_levels_m": [echo["level_m"] for echo in self.false_echoes()],
        }

    def status_record(self) -> dict:
        engine, last, now = self.engine, self.last, self.clock()
        return {
            "station": self.config.station.id,
            "version": __version__,
            "pid": os.getpid(),
            "running": True,
            "simulated": self.simulated,
            "updated": format_utc(self.wall()),
            "updated_epoch": self.wall(),
            "started": format_utc(self.started_wall),
            "samples": self.samples,
            "interval_s": self.interval(),
            "level_m": None if engine.level_m is None else round(engine.level_m, 3),
            "rate_m_per_h": None if engine.rate_m_per_h is None else round(engine.rate_m_per_h, 3),
            "state": engine.state_name,
            "warning": engine.warning_name,
            "rate_active": engine.rate_active,
            "faults": self.all_faults(),
            "siren": {"pattern": engine.siren_pattern, "silenced": self.annunciator.silenced(now)},
            "sensor": {
                "kind": "simulated" if self.simulated else self.config.sensor.kind,
                **(self.sensor.health() if hasattr(self.sensor, "health") else {}),
                "false_echoes": self.false_echoes(),
            },
            "outbox": self.outbox.stats()
            if self.outbox is not None
            else {"storage_error": self.storage_problem},
            "uplink": self.uploader.stats() if self.uploader is not None else None,
            "threads": self.health.failing(),
            "last_sample": None
            if last is None
            else {
                "raw": last.raw,
                "level_m": None if last.level_m is None else round(last.level_m, 4),
                "accepted": last.accepted,
                "reason": last.reason,
            },
        }

    def _supervised(self, name: str, step: Callable[[], None]) -> None:
        """The sampling loop is the main thread: a bug in a sample must not end it. The siren
        keeps what the engine last decided; the `internal` fault says something is wrong."""
        try:
            step()
        except Exception as error:
            self.health.failed(name, error)
            try:
                self.handle([])  # raise the `internal` fault (lamp, upstream)
            except Exception as second:
                log.error("could not report the failure: %s", second)
        else:
            if self.health.recovered(name):
                self.handle([])  # clear the `internal` fault now, not a sample later

    def _keep_threads_running(self) -> None:
        """A thread that has died is a gauge that lies: start it again."""
        self.output_thread.ensure_running()
        if self.outbox is not None:
            self.outbox.ensure_writer()
        if self.uploader is not None:
            self.uploader.ensure_running()
        for drain in list(self.salvage_drains):
            box, uploader = drain
            if box.stats()["depth"] == 0:
                uploader.stop(timeout=1.0)
                box.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{box.path}{suffix}").unlink(missing_ok=True)
                self.salvage_drains.remove(drain)
                log.info("salvaged outbox %s delivered and removed", box.path.name)
            else:
                uploader.ensure_running()
        if self.outbox is not None and self.outbox.salvaged:
            # The outbox replaced a damaged file while running: send what it salvaged.
            draining = {box.path for box, _ in self.salvage_drains}
            fresh = [path for path in self.outbox.take_salvaged() if path not in draining]
            self.salvage_drains += salvage_uploaders(self.config, self.health, fresh)

    def report_released_outputs(self, states: dict[str, bool | None]) -> None:
        """The last status a stopped daemon leaves: what each output read back as the pins
        were released (a technician, and the systemd test, can see the siren is off)."""
        if self.status is None:
            return
        record = self.status_record()
        record["running"] = False
        record["outputs_at_stop"] = states
        self.status.write(record)
        if states.get("siren"):
            log.error("the siren pin still read ON when it was released")
        else:
            log.info(
                "outputs released: %s",
                ", ".join(
                    f"{name} {'?' if on is None else 'on' if on else 'off'}"
                    for name, on in states.items()
                ),
            )

    def run(self, stop) -> None:
        """Sample until `stop` (a StopRequest, or a threading.Event in tests) is set."""
        self.annunciator.set_alarm(self.clock(), self.engine.warning, self.all_faults())
        self.output_thread.start()
        log.info(
            "gauge-agent %s started: station %s, sensor %s, every %g s (%g s in alarm)",
            __version__,
            self.config.station.id,
            "simulated" if self.simulated else self.config.sensor.kind,
            self.config.sensor.interval_s,
            self.config.sensor.alarm_interval_s,
        )
        self.notifier.ready(f"sampling every {self.config.sensor.interval_s:g} s")
        next_sample = self.clock()
        # systemd's watchdog wants a ping every WatchdogSec/2 whatever sensor.interval_s is:
        # the loop wakes at least that often. It pings only while sampling keeps to its
        # schedule, so a read that hangs (or a loop that stopped sampling) is restarted.
        ping_every = self.notifier.watchdog_s
        try:
            while not stop.is_set():
                now = self.clock()
                if now >= next_sample:
                    self._supervised("sampling", self.sample_once)
                    # Keep the schedule, but never try to catch up a backlog of samples.
                    next_sample = max(next_sample + self.interval(), self.clock())
                else:
                    self._supervised("sampling", lambda: self.handle(self.engine.run_until(now)))
                self._keep_threads_running()
                if ping_every is None or self.clock() <= next_sample + ping_every:
                    self.notifier.watchdog()
                deadline = self.engine.next_deadline()
                wake = next_sample if deadline is None else min(next_sample, deadline)
                if ping_every is not None:
                    wake = min(wake, self.clock() + ping_every)
                stop.wait(max(0.0, wake - self.clock()))
                if self._reload_requested(stop):
                    break
        finally:
            self.outputs_stop.set()
            self.annunciator.changed.set()  # wake it from its sleep to stop
            self.output_thread.join(timeout=2)
            if self.reload_config is not None:
                # The pins keep their state until the next Daemon's output thread takes over.
                self.notifier.notify("RELOADING=1")
                log.info("reloading the configuration after %d samples", self.samples)
            else:
                self.notifier.stopping()
                if self.status is not None:
                    record = self.status_record()
                    record["running"] = False
                    self.status.write(record)
                log.info("gauge-agent stopped after %d samples", self.samples)

    def _reload_requested(self, stop) -> bool:
        """A SIGHUP came: True when the reloader gave a new, valid configuration. A file with
        problems is reported by the reloader and sampling goes on with the running one."""
        take = getattr(stop, "take_reload", None)  # tests may pass a threading.Event
        if take is None or not take() or self.reloader is None:
            return False
        self.reload_config = self.reloader(self.config)
        return self.reload_config is not None

    def take_over(self, previous: Daemon) -> None:
        """After a reload: carry on from the previous Daemon's warning, silence and duty cycle,
        so a reload during a flood neither drops nor re-sounds anything."""
        engine = previous.engine
        if not self.engine.restore(engine.state_name, engine.rate_active):
            log.warning(
                "the levels were renamed: the warning %s is not taken over; the next"
                " readings decide",
                engine.state_name,
            )
        self.annunciator.take_over(previous.annunciator)
        self.samples = previous.samples
        self.salvage_drains = previous.salvage_drains


def _disk_free_mb(path: Path) -> float | None:
    try:
        return round(shutil.disk_usage(path).free / 1e6, 1)
    except OSError:
        return None


def _cpu_temperature_c(path: str = "/sys/class/thermal/thermal_zone0/temp") -> float | None:
    try:
        return round(int(Path(path).read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def open_outbox(
    config: Config, health: ThreadHealth | None = None
) -> tuple[Outbox | None, str | None]:
    """The outbox, or why there is none. A full or read-only card does not stop it: it holds
    records in memory and opens the file when it can. A damaged file (a failing SD card) is
    replaced by the outbox itself (see agent.outbox), at start as while running."""
    path = Path(config.storage.state_dir) / OUTBOX_FILE_NAME
    settings = config.uplink
    try:
        return Outbox(path, settings.max_backlog_mb, settings.dead_letter_max, health=health), None
    except (sqlite3.Error, OSError) as error:  # not expected: the outbox holds and retries
        problem = f"cannot use the outbox {path}: {error}"
    log.error("%s; running without it (the siren still works)", problem)
    return None, problem


def salvage_uploaders(
    config: Config, health: ThreadHealth, paths: list[Path] | None = None
) -> list[tuple[Outbox, Uploader]]:
    """An uploader for each salvaged outbox (`paths`, or every one in the state directory)
    with records left: they are sent under their own epoch."""
    if not config.uplink.url:
        return []  # store only: the salvaged files stay for the technician to take
    if paths is None:
        paths = sorted(Path(config.storage.state_dir).glob(f"{SALVAGE_PREFIX}*.sqlite"))
    drains = []
    for path in paths:
        try:
            box = Outbox(path, health=health)
        except sqlite3.Error as error:
            log.error("salvaged outbox %s cannot be opened: %s", path.name, error)
            continue
        # A salvaged file is all backlog: it goes at once, never waits for a calm batch.
        uploader = Uploader(
            box, dataclasses.replace(config.uplink, batch_s=0.0), config.station.id, health=health
        )
        uploader.start()
        drains.append((box, uploader))
    return drains


def _setup_logging() -> None:
    # Under systemd the journal stamps each line; on a terminal the time helps.
    under_journal = "JOURNAL_STREAM" in os.environ
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(message)s"
        if under_journal
        else "%(asctime)s %(levelname)s %(message)s",
    )


class StopRequest:
    """A stop that a signal handler can request without taking a lock.

    threading.Event cannot be set from a signal handler safely: Python runs the handler in the
    main thread between bytecodes, possibly while that thread's own Event.wait() holds the
    Condition's lock, and set() then waits for that lock for ever (seen: a SIGTERM that hung
    the daemon, which systemd would SIGKILL with the siren relay as it was). Here the handler
    sets a flag and writes a byte to a pipe; the wait is a select() on the pipe."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._requested = False
        self._reload = False

    def set(self) -> None:
        self._requested = True
        self._wake()

    def request_reload(self) -> None:
        """SIGHUP: wake the loop to read the configuration again (it does not stop)."""
        self._reload = True
        self._wake()

    def take_reload(self) -> bool:
        """True once per reload request; empties the pipe so the next wait waits again."""
        if not self._reload:
            return False
        self._reload = False
        try:
            while os.read(self._read, 64):
                pass
        except OSError:
            pass  # empty
        if self._requested:
            self._wake()  # a stop that came meanwhile must still wake the loop
        return True

    def _wake(self) -> None:
        try:
            os.write(self._write, b"!")
        except OSError:
            pass  # the pipe is full: a byte is already waiting

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout: float | None = None) -> bool:
        if not self._requested:
            try:
                select.select([self._read], [], [], timeout)
            except InterruptedError:
                pass
        return self._requested

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


def run_daemon(config: Config, simulate: bool = False, config_path: Path | None = None) -> int:
    """`gauge-agent run`: build the real parts, run until SIGTERM/SIGINT, release the pins.
    SIGHUP (`systemctl reload gauge-agent`) reads `config_path` and its calibration again: a
    valid file is applied without a stop, a file with problems is reported and the running
    configuration kept."""
    _setup_logging()
    stop = StopRequest()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    def request_reload(_signum: int, _frame: object) -> None:
        stop.request_reload()

    # First of all: a signal during start-up must not kill the process with the pins as
    # they are (SIGHUP's default action is to terminate).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    # `kill -USR1 <pid>` writes every thread's stack to the journal: how a technician
    # shows us a gauge that hangs, without stopping its siren.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    lock = StateLock(Path(config.storage.state_dir)).acquire()
    pin_factory = None
    if simulate:
        from gpiozero.pins.mock import MockFactory

        pin_factory = MockFactory()
    from agent.outputs import GpioOutputs

    health = ThreadHealth()
    sensor = None
    daemon: Daemon | None = None
    outputs = None
    outbox = uploader = None
    drains: list[tuple[Outbox, Uploader]] = []
    try:
        sensor = open_sensor(config, simulate=simulate, pin_factory=pin_factory)
        outbox, storage_problem = open_outbox(config, health)
        outputs = GpioOutputs(
            config.outputs, pin_factory=pin_factory, on_silence=lambda: _silence(daemon)
        )
        if outbox is not None and config.uplink.url:
            uploader = Uploader(outbox, config.uplink, config.station.id, health=health)
            uploader.start()
            drains = salvage_uploaders(config, health)
        status = StatusWriter(Path(config.storage.runtime_dir))

        def build(running: Config) -> Daemon:
            assert sensor is not None and outputs is not None  # opened above, before any build
            built = Daemon(
                running,
                sensor,
                outputs.apply,
                status=status,
                simulated=simulate,
                notifier=Notifier(),
                outbox=outbox,
                uploader=uploader,
                storage_problem=storage_problem,
                warning_file=Path(running.storage.runtime_dir) / WARNING_FILE_NAME,
                health=health,
            )
            built.reloader = lambda current: reread_configuration(config_path, current)
            return built

        daemon = build(config)
        daemon.salvage_drains = drains
        while True:
            daemon.run(stop)
            new = daemon.reload_config
            if new is None:
                break
            # Everything that depends on the configuration is made again; the outbox, the
            # lock and the status file stay (storage.* waits for a restart).
            sensor.close()
            try:
                sensor = open_sensor(new, simulate=simulate, pin_factory=pin_factory)
            except GaugeError as error:
                log.error("reload: %s; the running configuration stays", error)
                new = config
                sensor = open_sensor(config, simulate=simulate, pin_factory=pin_factory)
            if uploader is not None and new.uplink != config.uplink:
                uploader.stop(timeout=1.0)
                uploader = None
            if uploader is None and outbox is not None and new.uplink.url:
                uploader = Uploader(outbox, new.uplink, new.station.id, health=health)
                uploader.start()
            if new.outputs != config.outputs:
                outputs.close()  # other pins: released, then claimed again below
                outputs = GpioOutputs(
                    new.outputs, pin_factory=pin_factory, on_silence=lambda: _silence(daemon)
                )
            previous, config = daemon, new
            daemon = build(config)
            daemon.take_over(previous)
            log.info("configuration reloaded")
    finally:
        if outputs is not None:
            released = outputs.close()
            if daemon is not None:
                daemon.report_released_outputs(released)
        # Never wait on the network at a stop: the uploaders cut their connections.
        for running in [uploader] + [drain for _, drain in drains]:
            if running is not None:
                running.stop(timeout=1.0)
        for box in [outbox] + [drained for drained, _ in drains]:
            if box is not None:
                box.close()
        if sensor is not None:
            sensor.close()
        lock.release()
        stop.close()
    return 0


def reread_configuration(path: Path | None, running: Config) -> Config | None:
    """The configuration file and calibration as they are now, if they are valid and differ
    from the running ones; None (with the reason logged) to keep running as is."""
    if path is None:
        log.warning("SIGHUP: started without a configuration file; nothing to reload")
        return None
    try:
        new = load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            log.error("reload refused: %s", problem)
        log.error(
            "SIGHUP: %s has %d problem(s); the running configuration stays",
            path,
            len(error.problems),
        )
        return None
    if new.storage != running.storage:
        log.warning(
            "SIGHUP: storage.* changed; that takes a restart (sudo systemctl restart"
            " gauge-agent). The rest is applied now."
        )
        new = dataclasses.replace(new, storage=running.storage)
    if new == running:
        log.info("SIGHUP: %s is unchanged", path)
        return None
    return new


def _silence(daemon: Daemon | None) -> None:
    if daemon is None:
        return
    if daemon.annunciator.silence(daemon.clock()):
        log.warning("siren silenced for %.0f s by the button", daemon.config.outputs.silence_s)
