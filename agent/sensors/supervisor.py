"""Sensor supervision: the same failure handling for every driver.

- Counts reads and failures by reason (the health counters in the status file).
- After `sensor.fail_to_fault` failed samples in a row (no value at all in a burst), it backs
  off: one read per sample instead of a burst, and samples skipped for an exponentially growing
  time up to `sensor.backoff_max_s`. A dead RS-485 bus then costs one timeout a minute instead
  of five every two seconds; a skipped sample reports the last reason, so the fault stays up.
- With `sensor.power_relay_pin`, every `power_cycle_after` failed samples it switches the
  sensor's supply off and on again (what commercial loggers do for a hung transmitter), on a
  thread of its own: the seconds off and settling never hold up the sampling loop, whose
  fault deadlines and siren decisions go on; samples meanwhile are "power_cycle".
- A driver that raises is treated as "no reading, driver_error": a driver bug never stops the
  gauge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from agent.config import SensorConfig
from agent.reasons import Reason
from agent.sensors import RawRead, SensorDriver

log = logging.getLogger("gauge-agent")

FIRST_BACKOFF_S = 2.0


class SupervisedSensor:
    def __init__(
        self,
        driver: SensorDriver,
        settings: SensorConfig,
        power_relay=None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.driver = driver
        self.settings = settings
        self.power_relay = power_relay
        self.clock = clock
        self.sleep = sleep
        self.value_kind = driver.value_kind
        self.unit = driver.unit
        self.unit_to_m = driver.unit_to_m
        self.reads = 0
        self.values = 0
        self.failures: Counter[str] = Counter()
        self.failed_samples = 0  # in a row
        self.skipped_samples = 0
        self.power_cycles = 0
        self.backoff_until: float | None = None
        self.last_reason: str | None = None
        self.cycle_thread: threading.Thread | None = None

    @property
    def power_cycling(self) -> bool:
        return self.cycle_thread is not None and self.cycle_thread.is_alive()

    def read_burst(self, count: int | None = None) -> list[RawRead]:
        if self.power_cycling:
            self.skipped_samples += 1
            return [(None, "power_cycle")]
        now = self.clock()
        if self.backoff_until is not None and now < self.backoff_until:
            self.skipped_samples += 1
            return [(None, self.last_reason or Reason.BACKOFF)]
        failing = self.failed_samples >= self.settings.fail_to_fault
        wanted = 1 if failing else (count or self.settings.burst)
        try:
            reads = self.driver.read_burst(wanted)
        except Exception as error:
            log.warning("sensor driver failed: %s", error)
            reads = [(None, Reason.DRIVER_ERROR)]
        self._account(reads)
        return reads

    def _account(self, reads: list[RawRead]) -> None:
        self.reads += len(reads)
        got_value = False
        for value, reason in reads:
            if value is None:
                self.failures[reason or Reason.NO_READING] += 1
                self.last_reason = reason
            else:
                got_value = True
                self.values += 1
        if got_value:
            if self.failed_samples >= self.settings.fail_to_fault:
                log.info("sensor answers again after %d failed samples", self.failed_samples)
            self.failed_samples = 0
            self.backoff_until = None
            return
        self.failed_samples += 1
        beyond = self.failed_samples - self.settings.fail_to_fault
        if beyond >= 0 and self.settings.backoff_max_s > 0:
            delay = min(self.settings.backoff_max_s, FIRST_BACKOFF_S * 2**beyond)
            self.backoff_until = self.clock() + delay
        if (
            self.power_relay is not None
            and self.failed_samples % self.settings.power_cycle_after == 0
        ):
            self._power_cycle()

    def _power_cycle(self) -> None:
        log.warning(
            "sensor power cycled after %d failed samples (last: %s)",
            self.failed_samples,
            self.last_reason,
        )
        self.cycle_thread = threading.Thread(target=self._cycle, name="sensor-power", daemon=True)
        self.cycle_thread.start()

    def _cycle(self) -> None:
        try:
            self.power_relay.off()
            self.sleep(self.settings.power_off_s)
            self.power_relay.on()
            self.sleep(self.settings.power_settle_s)
        except Exception as error:
            log.error("sensor power cycle failed: %s", error)
        self.power_cycles += 1
        self.backoff_until = None  # try the freshly powered sensor at the next sample

    def health(self) -> dict:
        record = {
            "reads": self.reads,
            "values": self.values,
            "failures": dict(sorted(self.failures.items())),
            "failed_samples_in_a_row": self.failed_samples,
            "skipped_samples": self.skipped_samples,
            "power_cycles": self.power_cycles,
            "last_reason": self.last_reason,
        }
        driver_health = getattr(self.driver, "health", None)
        if driver_health is not None:
            record.update(driver_health())
        return record

    def close(self) -> None:
        if self.cycle_thread is not None:
            self.cycle_thread.join(self.settings.power_off_s + self.settings.power_settle_s + 1)
        try:
            self.driver.close()
        finally:
            if self.power_relay is not None:
                self.power_relay.close()
