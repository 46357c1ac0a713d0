"""`gauge-agent siren-test`: it asks, it says what sounds, it always ends with the siren off
(its time, a client that goes away, a real warning), and upstream hears it was a test."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from agent import i18n
from agent.annunciator import Annunciator
from agent.commands.common import daemon_error
from agent.control import RequestError, siren_test_handler
from tests.conftest import ROOT, calm_config, config_from, run_cli, running_daemon, wait_for

CONFIG = config_from({})


def fake_daemon() -> SimpleNamespace:
    return SimpleNamespace(
        config=CONFIG, annunciator=Annunciator(CONFIG, time.monotonic()), clock=time.monotonic
    )


def run_handler(daemon, request: dict, send) -> threading.Thread:
    handler = siren_test_handler(lambda: daemon)

    def serve() -> None:  # as ControlServer does: a client that went away ends its request
        try:
            handler(request, send)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_real_warning_takes_over_a_test_at_once():
    daemon = fake_daemon()
    answers: list[dict] = []
    thread = run_handler(daemon, {"seconds": 60}, answers.append)
    wait_for(lambda: answers, 5, "the test to start")
    assert daemon.annunciator.render(daemon.clock()).siren  # 'continuous': the highest level's
    daemon.annunciator.set_alarm(daemon.clock(), 2, [])  # siaga
    thread.join(5)
    assert answers[0]["testing"] and answers[-1] == {
        "ok": True,
        "done": True,
        "why": "a real warning took over",
    }


def test_a_client_that_goes_away_ends_the_test_and_the_siren_stops():
    daemon = fake_daemon()
    sent = []

    def send(answer):
        sent.append(answer)
        if len(sent) > 2:
            raise BrokenPipeError("the SSH session dropped")

    thread = run_handler(daemon, {"seconds": 60, "pattern": "intermittent"}, send)
    thread.join(5)
    assert not thread.is_alive() and not daemon.annunciator.testing(daemon.clock())
    assert not daemon.annunciator.render(daemon.clock()).siren
    (_, started), (_, ended) = daemon.annunciator.take_test_log()
    assert started["pattern"] == "intermittent" and started["seconds"] == 60
    assert ended == {"active": False, "why": "the technician ended it or went away"}


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"pattern": "wail"}, "no siren pattern 'wail'; configured: intermittent, continuous"),
        ({"seconds": 0}, "seconds must be a whole number from 1 to 120"),
        ({"seconds": 600}, "seconds must be a whole number from 1 to 120"),
    ],
)
def test_a_bad_request_is_refused_before_anything_sounds(request_, error):
    daemon = fake_daemon()
    with pytest.raises(RequestError, match=error):
        siren_test_handler(lambda: daemon)(request_, lambda answer: None)
    assert daemon.annunciator.take_test_log() == []


def test_no_test_while_a_warning_is_up():
    daemon = fake_daemon()
    daemon.annunciator.set_alarm(daemon.clock(), 1, [])
    with pytest.raises(RequestError, match=r"not now: a warning is up \(waspada\)"):
        siren_test_handler(lambda: daemon)({}, lambda answer: None)


def test_a_refusal_reaches_the_technician_in_the_language_of_the_command():
    """The daemon speaks the service's language; the answer carries its message and values,
    and the command says it in its own."""
    daemon = fake_daemon()
    daemon.annunciator.set_alarm(daemon.clock(), 2, [])
    with pytest.raises(RequestError) as refusal:
        siren_test_handler(lambda: daemon)({}, lambda answer: None)
    answer = json.loads(json.dumps(refusal.value.answer()))  # as it crosses the socket
    assert answer["ok"] is False
    assert answer["error"] == "not now: a warning is up (siaga); the siren is the warning's"
    try:
        i18n.use_language("id")
        assert daemon_error(answer) == (
            "jangan sekarang: peringatan sedang aktif (siaga); sirene sedang dipakai untuk"
            " peringatan"
        )
        # A daemon of another version sends only its words: they are shown as they are.
        assert daemon_error({"ok": False, "error": "it said no"}) == "it said no"
        assert daemon_error({**answer, "values": {}}) == answer["error"]
    finally:
        i18n.use_language("en")


@pytest.mark.slow
def test_through_the_running_daemon_with_a_killed_client_and_events_upstream(tmp_path):
    config = calm_config(tmp_path)
    declined = run_cli("siren-test", "--config", config, input="n\n")
    assert declined.returncode == 1 and "nothing sounded" in declined.stdout
    assert "The siren will sound 'continuous' (continuously) for 10 s" in declined.stdout
    with running_daemon(tmp_path / "config.toml") as daemon:
        wait_for(lambda: (tmp_path / "run" / "control.sock").exists(), 20, "the daemon")
        short = run_cli("siren-test", "--config", config, "--seconds", "1", "--yes")
        assert short.returncode == 0, short.stderr
        assert short.stdout.splitlines()[-1] == "test over (its time is up): the siren is off"
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "siren-test",
                "--config",
                config,
                "--seconds",
                "60",
                "--pattern",
                "intermittent",
                "--yes",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        while "testing" not in client.stdout.readline():
            pass
        client.send_signal(signal.SIGKILL)  # the phone's SSH session drops mid-test
        client.communicate(timeout=10)
        time.sleep(1.5)  # the daemon notices at its next half-second beat
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=10)
    assert "siren TEST continuous for 1 s" in stderr and "ended: its time is up" in stderr
    assert "siren test ended: the technician ended it or went away" in stderr
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite") as outbox:
        events = [json.loads(body) for (body,) in outbox.execute("SELECT body FROM events")]
    tests = [(e["active"], e.get("why")) for e in events if e["kind"] == "siren_test"]
    assert tests == [
        (True, None),
        (False, "its time is up"),
        (True, None),
        (False, "the technician ended it or went away"),
    ]


@pytest.mark.slow
def test_without_a_daemon_it_drives_the_outputs_itself_and_leaves_them_off(tmp_path):
    result = run_cli(
        "siren-test",
        "--config",
        calm_config(tmp_path),
        "--seconds",
        "1",
        "--quiet",
        "--yes",
        env={"GPIOZERO_PIN_FACTORY": "mock"},
    )
    assert result.returncode == 0, result.stderr
    assert "Every lamp will light for 1 s; the siren stays silent." in result.stdout
    assert result.stdout.splitlines()[-1] == "test over: the siren is off"
