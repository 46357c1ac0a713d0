"""The gauge daemon: the sampling loop that runs sensor, pipeline, engine and outputs.
agent.main builds the parts and hands them over; the records it keeps are built by agent.wire.

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

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from agent import __version__, salvage, wire
from agent import clock as host_clock
from agent.alarm import AlarmEngine, Event
from agent.annunciator import Annunciator
from agent.config import CalibrationConfig, Config
from agent.control import ControlServer, SampleFeed, sample_body
from agent.outbox import EVENT, HEARTBEAT, READING, Outbox
from agent.pipeline import Measurement, Pipeline
from agent.reasons import Reason
from agent.sensors import RawRead, SensorDriver
from agent.status import StatusWriter
from agent.supervision import LoopThread, ThreadHealth
from agent.systemd import Notifier
from agent.units import format_utc
from agent.uplink import Uploader

log = logging.getLogger("gauge-agent")

EDGE_MARGIN_S = 0.001  # the output thread wakes this long after a blink or pattern edge
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
    if event.kind == "siren_test":
        if data["active"]:
            quiet = " (lamps only)" if data.get("quiet") else ""
            return f"siren TEST {data.get('pattern')} for {data.get('seconds')} s{quiet}"
        return f"siren test ended: {data.get('why')}"
    if event.kind == "maintenance":
        if data["active"]:
            return "maintenance ON: readings flagged until it ends (alarms keep running)"
        return "maintenance ended"
    if event.kind == "calibration":
        changes = [
            f"{name} {data[f'previous_{name}']} -> {data[name]}"
            for name in ("sensor_elevation_m", "offset_m", "scale")
            if data[name] != data[f"previous_{name}"]
        ]
        return f"calibration changed: {', '.join(changes)}"
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
        feed: SampleFeed | None = None,
        control: ControlServer | None = None,
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
        self.salvage_drains: list[salvage.Drain] = []
        # SIGHUP: reloader(running config) -> a new valid Config, or None to keep running.
        self.reloader: Callable[[Config], Config | None] | None = None
        self.reload_config: Config | None = None
        self.since_boot = since_boot
        self.boot_id = boot_id if boot_id is not None else host_clock.boot_id()
        self.clock_synchronised = clock_synchronised or host_clock.SyncWatch()
        self.feed = feed  # samples for `gauge-agent read` (agent.control)
        # `gauge-agent maintenance on`: readings are flagged until then (monotonic seconds);
        # set from a control-socket thread, acted on (events) by the sampling thread.
        self.maintenance_until: float | None = None
        # When and by whom the calibration in use was set (calibration-history.jsonl), if known.
        self.calibration_set: str | None = None
        self._calibration_values = asdict(config.calibration)  # for the status, once
        self._maintenance_reported = False
        self.control = control
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
            return [(None, Reason.DRIVER_ERROR)]

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
            synchronised = self.clock_synchronised()
            for event in events:
                body = wire.event_body(event.kind, event.data, synchronised)
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

    def in_maintenance(self, now: float) -> bool:
        until = self.maintenance_until
        return until is not None and now < until

    def _maintenance_changes(self, now: float) -> list[Event]:
        """An event when maintenance starts, ends, or ends by itself."""
        active = self.in_maintenance(now)
        if active == self._maintenance_reported:
            return []
        self._maintenance_reported = active
        if not active:
            self.maintenance_until = None
        return [Event(now, "maintenance", {"active": active})]

    def _siren_tests(self, now: float) -> list[Event]:
        """Siren tests started and ended since the last sample, as events: nobody upstream
        takes a test for an alarm."""
        self.annunciator.testing(now)  # a test whose time is up ends (and is logged) here
        return [Event(t, "siren_test", what) for t, what in self.annunciator.take_test_log()]

    def sample_once(self) -> None:
        now = self.clock()
        self.handle(
            self.engine.run_until(now) + self._maintenance_changes(now) + self._siren_tests(now)
        )
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
        if self.feed is not None and self.feed.listening():
            self.feed.publish(self.live_sample(measurement))

    def live_sample(self, measurement: Measurement) -> dict:
        health = self.sensor.health() if hasattr(self.sensor, "health") else {}
        return sample_body(
            measurement,
            wall_time=self.wall(),
            raw_unit=self.sensor.unit,
            unit_to_m=self.sensor.unit_to_m,
            value_kind=self.sensor.value_kind,
            temperature_c=health.get("temperature_c"),
        )

    def reading_record(self, measurement: Measurement) -> dict:
        engine = self.engine
        return wire.reading_body(
            measurement,
            level_m=engine.level_m,
            state=engine.state_name,
            warning=engine.warning_name,
            rate_m_per_h=engine.rate_m_per_h,
            raw_unit=self.sensor.unit,
            clock_synchronised=self.clock_synchronised(),
            maintenance=self.in_maintenance(measurement.time),
        )

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
        return wire.heartbeat_body(
            uptime_s=now - self.started,
            outbox_stats=self.outbox.stats() if self.outbox is not None else {},
            disk_free_mb=_disk_free_mb(Path(self.config.storage.state_dir)),
            cpu_temp_c=_cpu_temperature_c(),
            clock_synchronised=self.clock_synchronised(),
            state=self.engine.state_name,
            warning=self.engine.warning_name,
            faults=self.all_faults(),
            false_echo_levels_m=[echo["level_m"] for echo in self.false_echoes()],
        )

    def _maintenance_status(self, now: float) -> dict | None:
        if not self.in_maintenance(now):
            return None
        assert self.maintenance_until is not None
        left_s = self.maintenance_until - now
        return {"until": format_utc(self.wall() + left_s), "left_s": round(left_s)}

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
            "last_valid_s_ago": round(now - self.engine.faults.last_valid_t, 1),
            "clock_synchronised": self.clock_synchronised(),
            "calibration": {**self._calibration_values, "changed": self.calibration_set},
            "maintenance": self._maintenance_status(now),
            "siren": {
                "pattern": engine.siren_pattern,
                "silenced": self.annunciator.silenced(now),
                "testing": self.annunciator.testing(now),
            },
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
        if self.control is not None:
            self.control.ensure_running()
        if self.outbox is not None:
            self.outbox.ensure_writer()
        if self.uploader is not None:
            self.uploader.ensure_running()
        salvage.tend(self.salvage_drains, self.outbox, self.config, self.health)

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

    def calibration_changed(self, old: CalibrationConfig) -> None:
        """A new calibration is in use (a reload after `gauge-agent calibrate`): an event, so
        that upstream sees why the levels stepped."""
        new = self.config.calibration
        data: dict = {}
        for name in ("sensor_elevation_m", "offset_m", "scale"):
            data[name] = getattr(new, name)
            data[f"previous_{name}"] = getattr(old, name)
        self.handle([Event(self.clock(), "calibration", data)])

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
        self.maintenance_until = previous.maintenance_until
        self._maintenance_reported = previous._maintenance_reported


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
