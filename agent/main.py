"""The composition root: `gauge-agent run` builds the real parts from the configuration, wires
them into a Daemon (agent.daemon, the sampling loop), runs it until a stop, applies a reload,
and releases everything, the pins first. Nothing else in the package constructs the hardware
and network parts of a running gauge (tests build what they need themselves).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import logging
import os
import select
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.calibration import CalibrationFiles
from agent.config import Config, load_config
from agent.control import (
    STILL_STARTING,
    ControlServer,
    RequestError,
    SampleFeed,
    maintenance_handler,
    read_handler,
    reload_handler,
    retry_dead_letters_handler,
    siren_test_handler,
)
from agent.daemon import WARNING_FILE_NAME, Daemon
from agent.errors import ConfigError, GaugeError
from agent.outbox import OUTBOX_FILE_NAME, Outbox
from agent.salvage import Drain, salvage_uploaders
from agent.sensors import SensorDriver, open_sensor
from agent.statelock import StateLock
from agent.status import StatusWriter
from agent.supervision import ThreadHealth
from agent.systemd import Notifier
from agent.units import format_utc
from agent.uplink import Uploader

if TYPE_CHECKING:  # gpiozero is imported only when the outputs are made
    from agent.outputs import GpioOutputs

log = logging.getLogger("gauge-agent")


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


class Parts:
    """What a running daemon is made of. Built once at start; on a reload, what the new
    configuration changes is built again (the outbox, the lock and the status file stay:
    storage.* waits for a restart)."""

    def __init__(self, simulate: bool, health: ThreadHealth, request_reload: Callable[[], None]):
        self.simulate = simulate
        self.health = health
        self.request_reload = request_reload  # what SIGHUP does; also on the control socket
        self.pin_factory = None
        if simulate:
            from gpiozero.pins.mock import MockFactory

            self.pin_factory = MockFactory()
        self.sensor: SensorDriver | None = None
        self.outputs: GpioOutputs | None = None
        self.outbox: Outbox | None = None
        self.storage_problem: str | None = None
        self.uploader: Uploader | None = None
        self.drains: list[Drain] = []
        self.status: StatusWriter | None = None
        self.daemon: Daemon | None = None  # the one running: the silence button acts on it
        self.feed = SampleFeed()  # outlasts a reload: a `read` in progress goes on
        self.control: ControlServer | None = None

    def open(self, config: Config) -> None:
        self.sensor = self._sensor(config)
        self.outbox, self.storage_problem = open_outbox(config, self.health)
        self.outputs = self._outputs(config)
        self.uploader = self._uploader(config)
        if self.uploader is not None:
            self.drains = salvage_uploaders(config, self.health)
        self.status = StatusWriter(Path(config.storage.runtime_dir))
        self.control = ControlServer(
            Path(config.storage.runtime_dir),
            config.station.id,
            {
                "read": read_handler(self.feed, self._sample_timeout_s),
                "reload": reload_handler(self.request_reload),
                "maintenance": maintenance_handler(self._maintenance),
                "siren-test": siren_test_handler(lambda: self.daemon),
                "retry-dead-letters": retry_dead_letters_handler(lambda: self.outbox),
            },
            self.health,
        )
        self.control.start()

    def build(self, running: Config, config_path: Path | None) -> Daemon:
        assert self.sensor is not None and self.outputs is not None  # open() came first
        daemon = Daemon(
            running,
            self.sensor,
            self.outputs.apply,
            status=self.status,
            simulated=self.simulate,
            notifier=Notifier(),
            outbox=self.outbox,
            uploader=self.uploader,
            storage_problem=self.storage_problem,
            warning_file=Path(running.storage.runtime_dir) / WARNING_FILE_NAME,
            health=self.health,
            feed=self.feed,
            control=self.control,
        )
        daemon.reloader = lambda current: reread_configuration(config_path, current)
        daemon.salvage_drains = self.drains  # one list: the daemon adds and removes drains
        daemon.calibration_set = last_calibration(config_path)
        self.daemon = daemon
        return daemon

    def reconfigure(self, config: Config, new: Config) -> Config:
        """Build again what `new` changes; returns the configuration now in force (`config`
        if the new sensor cannot be opened)."""
        assert self.sensor is not None
        self.sensor.close()
        try:
            self.sensor = self._sensor(new)
        except GaugeError as error:
            log.error("reload: %s; the running configuration stays", error)
            new = config
            self.sensor = self._sensor(config)
        if self.uploader is not None and new.uplink != config.uplink:
            self.uploader.stop(timeout=1.0)
            self.uploader = None
        if self.uploader is None:
            self.uploader = self._uploader(new)
        if new.outputs != config.outputs:
            assert self.outputs is not None
            self.outputs.close()  # other pins: released, then claimed again
            self.outputs = self._outputs(new)
        return new

    def close(self) -> None:
        """Release the pins first (and say how they were left), then stop the uploaders without
        waiting on the network, then close the files and the sensor."""
        if self.control is not None:
            self.control.stop()
        if self.outputs is not None:
            released = self.outputs.close()
            if self.daemon is not None:
                self.daemon.report_released_outputs(released)
        for running in [self.uploader] + [drain for _, drain in self.drains]:
            if running is not None:
                running.stop(timeout=1.0)
        for box in [self.outbox] + [drained for drained, _ in self.drains]:
            if box is not None:
                box.close()
        if self.sensor is not None:
            self.sensor.close()

    def _sensor(self, config: Config) -> SensorDriver:
        return open_sensor(config, simulate=self.simulate, pin_factory=self.pin_factory)

    def _outputs(self, config: Config) -> GpioOutputs:
        from agent.outputs import GpioOutputs

        return GpioOutputs(config.outputs, pin_factory=self.pin_factory, on_silence=self._silence)

    def _uploader(self, config: Config) -> Uploader | None:
        if self.outbox is None or not config.uplink.url:
            return None
        uploader = Uploader(self.outbox, config.uplink, config.station.id, health=self.health)
        uploader.start()
        return uploader

    def _maintenance(self, minutes: int) -> str | None:
        """Flag the running daemon's readings for `minutes` (0: stop now); when it ends."""
        daemon = self.daemon
        if daemon is None:
            raise RequestError(STILL_STARTING)
        if minutes == 0:
            daemon.maintenance_until = daemon.clock()  # ends at the next sample, with an event
            return None
        daemon.maintenance_until = daemon.clock() + 60.0 * minutes
        return format_utc(daemon.wall() + 60.0 * minutes)

    def _sample_timeout_s(self) -> float:
        """How long a `read` client waits for the next sample: a slow sample and some."""
        daemon = self.daemon
        return 10.0 + (3 * daemon.interval() if daemon is not None else 60.0)

    def _silence(self) -> None:
        daemon = self.daemon
        if daemon is not None and daemon.annunciator.silence(daemon.clock()):
            log.warning("siren silenced for %.0f s by the button", daemon.config.outputs.silence_s)


def last_calibration(config_path: Path | None) -> str | None:
    """'2026-11-30 by budi' from calibration-history.jsonl beside the configuration, if any.
    Read at start and at a reload, never per sample; a damaged history is not a reason to stop."""
    if config_path is None:
        return None
    try:
        history = CalibrationFiles(config_path).history()
    except (OSError, GaugeError):
        return None
    entries = [entry for entry in history if "time" in entry]
    if not entries:
        return None
    last = entries[-1]
    return f"{str(last['time'])[:10]} by {last.get('user', '?')}"


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
    parts = Parts(simulate, ThreadHealth(), stop.request_reload)
    try:
        parts.open(config)
        daemon = parts.build(config, config_path)
        while True:
            daemon.run(stop)
            new = daemon.reload_config
            if new is None:
                break
            config = parts.reconfigure(config, new)
            previous, daemon = daemon, parts.build(config, config_path)
            daemon.take_over(previous)
            log.info("configuration reloaded")
            if config.calibration != previous.config.calibration:
                daemon.calibration_changed(previous.config.calibration)
    finally:
        parts.close()
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
