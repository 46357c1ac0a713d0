"""Siren and lamps: the annunciator's decisions and the exact pin histories through gpiozero."""

from __future__ import annotations

import pytest

from agent.annunciator import Annunciator, Frame
from agent.outputs import GpioOutputs
from tests.conftest import config_from

CONFIG = config_from(
    {
        "outputs": {
            "silence_s": 600.0,
            "siren_max_on_s": 300.0,
            "siren_rest_s": 30.0,
            "heartbeat_s": 5.0,
        }
    }
)
SIAGA, AWAS, WASPADA = 2, 3, 1


def siren_at(annunciator: Annunciator, times) -> list[bool]:
    return [annunciator.render(t).siren for t in times]


def test_waspada_is_a_steady_amber_lamp_and_no_siren():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.set_alarm(1.0, WASPADA, [])
    frames = {annunciator.render(t) for t in (1.3, 2.0, 31.0)}
    assert frames == {Frame(siren=False, green=False, amber=True, red=False)}


def test_siaga_sounds_five_seconds_in_thirty_with_a_steady_red_lamp():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.set_alarm(100.0, SIAGA, [])
    assert siren_at(annunciator, [100.0, 104.9, 105.0, 129.9, 130.0, 134.9, 135.0]) == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    assert {annunciator.render(t).red for t in (100.2, 100.7, 117.0)} == {True}


def test_awas_sounds_continuously_with_a_blinking_red_lamp():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.set_alarm(10.0, AWAS, [])
    assert siren_at(annunciator, [10.0, 50.0, 200.0, 309.9]) == [True] * 4
    assert [annunciator.render(t).red for t in (10.0, 10.4, 10.5, 10.9, 11.0)] == [
        True,
        True,
        False,
        False,
        True,
    ]


def test_duty_limit_rests_the_siren_then_resumes():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.set_alarm(0.0, AWAS, [])
    times = [0.0, 150.0, 299.9, 300.0, 329.9, 330.0, 629.9, 630.0]
    assert siren_at(annunciator, times) == [True, True, True, False, False, True, True, False]


def test_silence_button_mutes_until_silence_s_and_escalation_resounds():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.set_alarm(0.0, SIAGA, [])
    assert annunciator.render(1.0).siren
    assert annunciator.silence(2.0)
    assert siren_at(annunciator, [2.0, 30.0, 601.9]) == [False, False, False]
    assert annunciator.render(602.0 + 28.0).siren  # silence over: pattern goes on (on phase)
    assert annunciator.silence(700.0)
    assert siren_at(annunciator, [700.0, 705.0, 709.9]) == [False, False, False]
    annunciator.set_alarm(710.0, AWAS, [])  # escalation sounds it again at once
    assert annunciator.render(710.0).siren


def test_silence_does_nothing_when_the_siren_is_off_and_does_not_dim_lamps():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.set_alarm(0.0, WASPADA, [])
    assert annunciator.silence(1.0) is False
    annunciator.set_alarm(2.0, SIAGA, [])
    assert annunciator.render(2.0).siren


def test_faults_blink_amber_and_do_not_touch_the_siren():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.set_alarm(0.0, AWAS, ["stale"])
    frames = [annunciator.render(t) for t in (10.0, 10.5, 11.0)]
    assert [f.amber for f in frames] == [True, False, True]
    assert all(f.siren for f in frames)


def test_green_heartbeat_flashes_every_heartbeat_s():
    annunciator = Annunciator(CONFIG, 0.0)
    assert [annunciator.render(t).green for t in (0.0, 0.19, 0.2, 4.9, 5.0, 5.1, 5.3)] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]


# -- through gpiozero, exact pin histories ---------------------------------------------------


def states(factory, pin: int) -> list[bool]:
    return [bool(s.state) for s in factory.pin(pin).states]


def test_pins_follow_an_escalation_exactly(mock_factory):
    outputs = GpioOutputs(CONFIG.outputs, pin_factory=mock_factory)
    annunciator = Annunciator(CONFIG, 0.0)
    try:
        annunciator.set_alarm(0.0, 0, [])
        for t in (1.0, 2.0):
            outputs.apply(annunciator.render(t))
        annunciator.set_alarm(3.0, WASPADA, [])
        outputs.apply(annunciator.render(3.0))
        annunciator.set_alarm(10.0, SIAGA, [])
        for t in (10.0, 12.0, 15.0, 20.0, 40.0):
            outputs.apply(annunciator.render(t))
    finally:
        outputs.close()
    # Each history starts with the pin's initial low state; the siren sounds at 10 (siaga),
    # stops at 15, sounds again at 40, and is switched off when the outputs close.
    assert states(mock_factory, 17) == [False, True, False, True, False]
    assert states(mock_factory, 24) == [False, True, False]  # red: siaga, off on close
    assert states(mock_factory, 23) == [False, True, False]  # amber: waspada only
    assert states(mock_factory, 22) == [
        False,
        True,
        False,
        True,
        False,
    ]  # heartbeat flashes at 10, 15


def test_active_low_siren_relay_is_driven_inverted(mock_factory):
    config = config_from({"outputs": {"siren_active_high": False}})
    outputs = GpioOutputs(config.outputs, pin_factory=mock_factory)
    annunciator = Annunciator(config, 0.0)
    try:
        annunciator.set_alarm(0.0, AWAS, [])
        outputs.apply(annunciator.render(0.0))
    finally:
        outputs.close()
    # High (relay off) at start, low while sounding, high again when closed.
    assert states(mock_factory, 17) == [False, True, False, True]


def test_silence_button_press_reaches_the_annunciator(mock_factory):
    pressed = []
    outputs = GpioOutputs(
        CONFIG.outputs, pin_factory=mock_factory, on_silence=lambda: pressed.append(True)
    )
    try:
        button = mock_factory.pin(27)
        button.drive_low()
        button.drive_high()
    finally:
        outputs.close()
    assert pressed == [True]


def test_close_switches_the_siren_off_and_releases_every_pin(mock_factory):
    outputs = GpioOutputs(CONFIG.outputs, pin_factory=mock_factory)
    outputs.apply(Frame(siren=True, green=True, amber=True, red=True))
    outputs.close()
    for pin in (17, 22, 23, 24):
        assert states(mock_factory, pin)[-1] is False
    assert outputs.siren.closed and outputs.button.closed


@pytest.mark.hardware
def test_siren_relay_and_lamps_switch_on_a_real_pi():
    """On the Pi, with the default pin factory: the relay and lamps follow the frames."""
    outputs = GpioOutputs(CONFIG.outputs)
    try:
        outputs.apply(Frame(siren=True, green=False, amber=False, red=True))
        assert (outputs.siren.value, outputs.red.value) == (1, 1)
        outputs.apply(Frame(siren=False, green=True, amber=False, red=False))
        assert (outputs.siren.value, outputs.green.value, outputs.red.value) == (0, 1, 0)
    finally:
        outputs.close()


# -- issue #13: the output thread sleeps until the next edge ---------------------------------

import copy  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=600, deadline=None)
@given(
    warning=st.integers(0, 3),
    faults=st.booleans(),
    silenced=st.booleans(),
    start=st.floats(0, 1e5),
    steps=st.lists(st.floats(0.0005, 40), min_size=1, max_size=25),
    heartbeat=st.sampled_from([0.5, 5.0, 7.3]),
    max_on=st.sampled_from([1.0, 12.5, 300.0]),
    silence_s=st.sampled_from([0.7, 9.0, 600.0]),
    siren_test=st.none()
    | st.tuples(st.sampled_from(["intermittent", "continuous"]), st.floats(0.5, 60), st.booleans()),
)
@pytest.mark.slow
def test_the_frame_never_changes_before_the_moment_next_change_names(
    warning, faults, silenced, start, steps, heartbeat, max_on, silence_s, siren_test
):
    """Sleeping until next_change misses nothing: at any moment before it the frame is the one
    rendered when it was computed, and just after it the thread renders again."""
    annunciator = Annunciator(
        config_from(
            {
                "outputs": {
                    "heartbeat_s": heartbeat,
                    "siren_max_on_s": max_on,
                    "siren_rest_s": 3.0,
                    "silence_s": silence_s,
                }
            }
        ),
        start,
    )
    annunciator.set_alarm(start, warning, ["stale"] if faults else [])
    if silenced:
        annunciator.silence(start + 0.1)
    if siren_test is not None:
        annunciator.start_test(start + 0.05, *siren_test)
    now = start
    for step in steps:
        frame = annunciator.render(now)
        wake = annunciator.next_change(now)
        assert wake >= now  # == only when now sits on an edge to the last bit
        # What the output thread would see if it woke anywhere before the edge: nothing new.
        for fraction in (0.25, 0.5, 0.999):
            moment = now + (wake - now) * fraction
            if moment < wake - 1e-6:
                probe = copy.copy(annunciator)  # render moves the duty-cycle state on
                assert probe.render(moment) == frame, (now, moment, wake)
        now = min(wake + 0.001, now + step)  # it sleeps to the edge or is woken earlier


def test_a_siren_test_sounds_its_pattern_lights_every_lamp_and_ends_by_itself():
    annunciator = Annunciator(CONFIG, 0.0)
    assert annunciator.start_test(10.0, "intermittent", 12.0, quiet=False) is None
    pattern = CONFIG.pattern("intermittent")
    assert siren_at(annunciator, [10.0, 10.0 + pattern.on_s + 0.01]) == [True, False]
    frame = annunciator.render(11.0)
    assert (frame.green, frame.amber, frame.red) == (True, True, True)
    assert annunciator.testing(21.9) and not annunciator.testing(22.0)
    assert not annunciator.render(22.0).siren
    assert [(t, what["active"]) for t, what in annunciator.take_test_log()] == [
        (10.0, True),
        (22.0, False),
    ]


def test_a_quiet_test_lights_the_lamps_only_and_a_real_warning_takes_over_at_once():
    annunciator = Annunciator(CONFIG, 0.0)
    annunciator.start_test(0.0, "continuous", 60.0, quiet=True)
    assert siren_at(annunciator, [0.0, 30.0]) == [False, False]
    annunciator.start_test(31.0, "continuous", 60.0, quiet=False)
    assert annunciator.render(31.5).siren
    annunciator.set_alarm(32.0, WASPADA, [])  # a warning with no siren: the test still ends
    assert not annunciator.testing(32.0) and not annunciator.render(32.0).siren
    assert annunciator.take_test_log()[-1] == (
        32.0,
        {"active": False, "why": "a real warning took over"},
    )
    refused = annunciator.start_test(33.0, "continuous", 10.0, quiet=False)
    assert refused == "waspada"


def test_an_idle_gauge_renders_twice_a_heartbeat_not_twenty_times_a_second():
    """The output thread of a Normal gauge (no fault, no siren) over 20 simulated seconds."""
    annunciator = Annunciator(config_from({"outputs": {"heartbeat_s": 5.0}}), 0.0)
    annunciator.set_alarm(0.0, 0, [])
    now, renders = 0.0, 0
    while now < 20.0:
        annunciator.render(now)
        renders += 1
        now = annunciator.next_change(now) + 0.001
    assert renders == 8  # the green flash on and off, four heartbeats (was 400 ticks)
