"""The output thread's cost (issue #13): CPU of an idle gauge and the siren's latency.

- Idle CPU: the daemon's output thread (real Daemon, gpiozero mock pins) for ten seconds in
  Normal, as CPU milliseconds per second of wall time, against the same process blocked on an
  Event (the floor), a bare loop that only flashes the heartbeat lamp (the least a gauge with a
  heartbeat can do), and the old design, a render every 50 ms.
- Siren latency: from the reading to the siren pin, through the whole daemon (pipeline, engine,
  annunciator, outbox and uploader), p50 and p99 over many alarms, with the upstream up, with
  it hanging in a request, and with no uplink at all, against the old 50 ms tick.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time

from agent.annunciator import HEARTBEAT_FLASH_S, Annunciator
from agent.config import build_config
from agent.daemon import Daemon
from agent.outputs import GpioOutputs
from agent.sensors.simulated import SimulatedSensor
from tests.sensors import LiveSensor

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


NORMAL_DISTANCE_M = 3.5  # 6.90 m under the default calibration: Normal
AWAS_DISTANCE_M = 1.5  # 8.90 m: Awas, continuous siren
SAMPLE_SPACING_S = 10.0
HANG_S = 600.0  # longer than the bench: the upload in flight never comes back


def bench_siren_latency(upstream: str, alarms: int = 200) -> dict:
    """From the reading to the siren pin, through the whole daemon: `sample_once` (read,
    pipeline, engine, annunciator, event and reading into the outbox, the uploader woken)
    on this thread, the pin written by the daemon's own output thread.

    `upstream`: "up" (the reference receiver answers), "hanging" (every request hangs, so the
    uploader sits in a request the whole time), or "none" (no outbox, no uploader)."""
    import tempfile
    from pathlib import Path

    from gpiozero.pins.mock import MockFactory

    from agent.outbox import Outbox
    from agent.receiver import ReferenceReceiver
    from agent.uplink import Uploader

    directory = tempfile.TemporaryDirectory()
    root = Path(directory.name)
    token = "bench-latency-token"
    (root / "token").write_text(token)
    (root / "token").chmod(0o600)
    receiver = ReferenceReceiver(root / "receiver.sqlite", {"benanga-01": token}).start()
    if upstream == "hanging":
        receiver.script.extend([("hang", HANG_S)] * 10)
    settings = {
        # Every reading is believed at once and the warning follows it both ways at once:
        # what is timed is the path to the pin, not the filter's or the engine's delays.
        "filter": {"acquire_samples": 1, "window": 1, "max_rate_m_per_min": 1000.0},
        "alarm": {"on_delay_s": 0.0, "off_delay_s": 0.0},
        "uplink": {"url": receiver.url, "token_file": str(root / "token"), "batch_s": 0.0},
    }
    config = build_config(settings)
    outputs = GpioOutputs(config.outputs, pin_factory=MockFactory())
    siren_on = threading.Event()
    siren_off = threading.Event()
    pin_times: list[float] = []

    def apply(frame):
        outputs.apply(frame)
        if frame.siren and not siren_on.is_set():
            pin_times.append(time.perf_counter())
            siren_on.set()
        elif not frame.siren:
            siren_off.set()

    outbox = uploader = None
    if upstream != "none":
        outbox = Outbox(root / "outbox.sqlite")
        uploader = Uploader(outbox, config.uplink, "benanga-01")
    sensor = LiveSensor(NORMAL_DISTANCE_M)
    # Samples 10 s apart on the gauge's clock (the default interval), taken without waiting:
    # the gate judges a jump by the time since the last reading.
    skipped = [0.0]

    def clock() -> float:
        return time.monotonic() + skipped[0]

    def sample() -> None:
        skipped[0] += SAMPLE_SPACING_S
        daemon.sample_once()

    daemon = Daemon(
        config, sensor, apply, clock=clock, outbox=outbox, uploader=uploader, warning_file=None
    )
    daemon.annunciator.set_alarm(time.monotonic(), 0, [])
    daemon.output_thread.start()
    if uploader is not None:
        uploader.start()
    latencies = []
    logging.disable(logging.WARNING)  # 400 level changes in the journal say nothing here
    try:
        for _ in range(3):  # the gate's first level, then steady
            sample()
        if upstream == "hanging":
            deadline = time.monotonic() + 10
            while receiver.requests < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            if receiver.requests < 1:
                raise RuntimeError("the uploader never reached the hanging upstream")
        for _ in range(alarms):
            siren_on.clear()
            sensor.distance_m = AWAS_DISTANCE_M
            skipped[0] += SAMPLE_SPACING_S
            read_at = time.perf_counter()
            daemon.sample_once()
            if not siren_on.wait(2.0):
                raise RuntimeError("the siren did not sound for an Awas reading")
            latencies.append((pin_times[-1] - read_at) * 1000)
            siren_off.clear()
            sensor.distance_m = NORMAL_DISTANCE_M
            sample()
            if not siren_off.wait(2.0):
                raise RuntimeError("the siren did not stop when the water went down")
            time.sleep(0.013)  # a little while in Normal; not in step with anything
        requests = receiver.requests
    finally:
        logging.disable(logging.NOTSET)
        daemon.outputs_stop.set()
        daemon.annunciator.changed.set()
        daemon.output_thread.join(2)
        if uploader is not None:
            uploader.stop(timeout=1)
        outputs.close()
        if outbox is not None:
            outbox.close()
        receiver.script.clear()
        receiver.close()
        directory.cleanup()
    if upstream == "hanging" and requests != 1:
        raise RuntimeError(f"the upstream was meant to hang in one request, it had {requests}")
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "upstream_requests": requests,
        # The old thread rendered every 50 ms: on average half a tick late, at worst a tick.
        "old_p50_ms": OLD_TICK_S * 1000 / 2,
        "old_p99_ms": OLD_TICK_S * 1000 * 0.99,
    }
