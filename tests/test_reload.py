"""SIGHUP (`systemctl reload gauge-agent`): the configuration and calibration are read again.
A valid file is applied without a stop and without losing the warning or the siren; a file with
problems is reported and the running configuration kept; a SIGHUP during start-up does not kill
the daemon with the pins as they were (its default action would)."""

from __future__ import annotations

import contextlib
import signal

import pytest

from tests.conftest import daemon_status, fast_config_text, running_daemon, wait_for

ORDER = ["normal", "waspada", "siaga", "awas"]


def handles_sighup(pid: int) -> bool:
    """SIGHUP ignored or caught, from the kernel's own view of the process."""
    with open(f"/proc/{pid}/status") as status:
        masks = dict(line.split(":", 1) for line in status if line.startswith("Sig"))
    return any(int(masks[name], 16) & 1 for name in ("SigIgn", "SigCgt"))


@pytest.mark.slow
def test_a_bad_file_is_reported_and_the_running_configuration_kept(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(fast_config_text(tmp_path), encoding="utf-8")
    log = tmp_path / "daemon.log"
    with open(log, "w") as stderr, running_daemon(config, "--simulate", stderr=stderr) as process:
        wait_for(lambda: daemon_status(tmp_path).get("samples", 0) > 3, 20, "samples")
        config.write_text(config.read_text().replace("burst = 3", "burst = 0"), encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "the running configuration stays" in log.read_text(), 10, "the refusal")
        before = daemon_status(tmp_path)["samples"]
        wait_for(lambda: daemon_status(tmp_path)["samples"] > before + 3, 10, "more samples")
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    text = log.read_text()
    assert "reload refused:" in text and "sensor.burst" in text
    assert "configuration reloaded" not in text and "Traceback" not in text


@pytest.mark.slow
def test_a_valid_file_is_applied_during_a_flood_without_dropping_the_warning(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(fast_config_text(tmp_path), encoding="utf-8")
    log = tmp_path / "daemon.log"
    with open(log, "w") as stderr, running_daemon(config, "--simulate", stderr=stderr) as process:
        wait_for(
            lambda: daemon_status(tmp_path).get("warning") in ("siaga", "awas"),
            60,
            "the flood to reach siaga",
        )
        before = daemon_status(tmp_path)
        config.write_text(
            config.read_text() + '\n[station]\nname = "Benanga, reloaded"\n', encoding="utf-8"
        )
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), 10, "the reload")
        # The first status the new configuration writes already carries the warning.
        after = wait_for(
            lambda: (lambda s: s if s["samples"] > before["samples"] else None)(
                daemon_status(tmp_path)
            ),
            10,
            "a sample after the reload",
        )
        assert ORDER.index(after["warning"]) >= ORDER.index(before["warning"])
        assert after["siren"]["pattern"] != "off" and after["pid"] == before["pid"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    text = log.read_text()
    assert text.count("gauge-agent 0.1.0 started") == 2 and "Traceback" not in text


@pytest.mark.slow
def test_a_sighup_during_start_up_does_not_kill_the_daemon(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(fast_config_text(tmp_path), encoding="utf-8")
    # The child inherits an ignored SIGHUP (under nohup, say), which would prove nothing.
    with contextlib.ExitStack() as stack:
        inherited = signal.signal(signal.SIGHUP, signal.SIG_DFL)
        try:
            process = stack.enter_context(running_daemon(config, "--simulate"))
        finally:
            signal.signal(signal.SIGHUP, inherited)
        # As soon as the process handles SIGHUP at all (from then on it must never die of
        # one), while it is still importing and opening: before the first status.
        wait_for(lambda: handles_sighup(process.pid), 10, "SIGHUP to be handled", poll_s=0.005)
        assert daemon_status(tmp_path) == {}
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon_status(tmp_path).get("samples", 0) > 3, 20, "samples")
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
