"""The output thread's cost (issue #13): CPU of an idle gauge and the siren's latency.

- Idle CPU: the daemon's output thread (real Daemon, gpiozero mock pins) for ten seconds in
  Normal, as CPU milliseconds per second of wall time, against the same process blocked on an
  Event (the floor), a bare loop that only flashes the heartbeat lamp (the least a gauge with a
  heartbeat can do), and the old design, a render every 50 ms.
- Siren latency: from the alarm decision (what the sampling thread hands the annunciator) to
  the siren pin reading on, p50 and p99 over many alarms, against the old 50 ms tick.
"""

from __future__ import annotations

import statistics
import threading
import time

from agent.annunciator import HEARTBEAT_FLASH_S, Annunciator
from agent.config import build_config
from agent.daemon import Daemon
from agent.outputs import GpioOutputs
from agent.sensors.simulated import SimulatedSensor

OLD_TICK_S = 0.05


def _per_second(run, seconds: float, stop: threading.Event | None = None) -> float:
    """CPU milliseconds per wall second of the thread that runs `run(stop)` for `seconds`
    (the thread's own CPU clock: nanoseconds, not the process's 10 ms ticks)."""
    stop = stop or threading.Event()
    used: list[float] = []

    def measured():
        started_cpu = time.thread_time()
        run(stop)
        used.append(time.thread_time() - started_cpu)

    thread = threading.Thread(target=measured, daemon=True)
    started = time.monotonic()
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return used[0] * 1000 / (time.monotonic() - started)


def _daemon(config):
    from gpiozero.pins.mock import MockFactory

    outputs = GpioOutputs(config.outputs, pin_factory=MockFactory())
    daemon = Daemon(config, SimulatedSensor(config), outputs.apply, warning_file=None)
    return daemon, outputs


def bench_idle_cpu(seconds: float = 10.0) -> dict:
    config = build_config({})
    daemon, outputs = _daemon(config)
    daemon.annunciator.set_alarm(time.monotonic(), 0, [])

    def output_thread(stop):
        while not stop.is_set():
            daemon._output_step()
            if stop.is_set():
                return
        # (the daemon stops it through outputs_stop and the annunciator's `changed`)

    # The thread that stops the output loop is started here, not in the measured thread:
    # starting a thread costs about half a millisecond of CPU, more than the loop itself uses
    # in five idle seconds.
    stop_ours = threading.Event()

    def waker():
        stop_ours.wait()
        daemon.outputs_stop.set()
        daemon.annunciator.changed.set()

    threading.Thread(target=waker, daemon=True).start()

    def ours(stop):
        output_thread(daemon.outputs_stop)

    def old_tick(stop):
        annunciator = Annunciator(config, time.monotonic())
        while not stop.is_set():
            outputs.apply(annunciator.render(time.monotonic()))
            stop.wait(OLD_TICK_S)

    def blocked(stop):
        stop.wait()

    def bare_heartbeat(stop):
        """The least a gauge that flashes its lamp can do: wake at each edge of the heartbeat
        flash and write the pin, nothing else."""
        green = outputs.green
        start = time.monotonic()
        while not stop.is_set():
            phase = (time.monotonic() - start) % config.outputs.heartbeat_s
            on = phase < HEARTBEAT_FLASH_S
            green.value = on
            edge = HEARTBEAT_FLASH_S if on else config.outputs.heartbeat_s
            stop.wait(edge - phase + 0.001)

    result = {
        "ours": _per_second(ours, seconds, stop_ours),
        "old": _per_second(old_tick, seconds),
        "floor": _per_second(blocked, seconds),
        "heartbeat": _per_second(bare_heartbeat, seconds),
    }
    outputs.close()
    return result


def bench_siren_latency(alarms: int = 200) -> dict:
    config = build_config({})
    daemon, outputs = _daemon(config)
    siren_on = threading.Event()
    real_apply = outputs.apply

    def apply(frame):
        real_apply(frame)
        if frame.siren:
            siren_on.set()

    daemon.apply_outputs = apply
    daemon.output_thread.start()
    latencies = []
    for _ in range(alarms):
        siren_on.clear()
        decided = time.perf_counter()
        daemon.annunciator.set_alarm(time.monotonic(), 3, [])  # awas: continuous
        siren_on.wait(2.0)
        latencies.append((time.perf_counter() - decided) * 1000)
        daemon.annunciator.set_alarm(time.monotonic(), 0, [])
        time.sleep(0.013)  # a little while in Normal; not in step with anything
    daemon.outputs_stop.set()
    daemon.annunciator.changed.set()
    daemon.output_thread.join(2)
    outputs.close()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        # The old thread rendered every 50 ms: on average half a tick late, at worst a tick.
        "old_p50_ms": OLD_TICK_S * 1000 / 2,
        "old_p99_ms": OLD_TICK_S * 1000 * 0.99,
    }
