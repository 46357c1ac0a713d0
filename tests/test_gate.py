"""The plausibility gate: what is the water, what is something else, and the way back.

Pure value sequences through the same Replay loop the daemon's logic uses (pipeline, gate, engine;
no I/O). Unless a test says otherwise the configuration is the shipped one for the Benanga dam
(the embedded default): samples every 10 s, `max_rate_m_per_min` 0.025 (1.5 m/h), `noise_m`
0.05, waspada 7.50 m, siaga 7.90 m, awas 8.50 m. Distance tests are an ultrasonic sensor
10.40 m above the datum, so water at 7.00 m reads 3.40 m and an object 1.50 m below the sensor
reads as 8.90 m: far above awas, which is what makes an object in the beam dangerous.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.alarm import Event
from agent.config import Config
from agent.gate import ACCEPTED, REJECTED, UNCONFIRMED, PlausibilityGate
from agent.pipeline import FALSE_ECHO, IMPLAUSIBLE
from agent.replay import Replay, ReplayOptions
from tests.conftest import config_from
from tests.sequences import compact

BENANGA = config_from({})
ELEVATION = BENANGA.calibration.sensor_elevation_m
THRESHOLDS = [level.above_m for level in BENANGA.alarm.levels]  # 7.50, 7.90, 8.50
OBJECT_M = 1.50  # distance of an object in the beam: reads as level 8.90
MINUTE, HOUR = 60.0, 3600.0


def distance(level: float) -> float:
    return round(ELEVATION - level, 4)


@dataclass
class Replayed:
    events: list[Event]
    replay: Replay

    @property
    def trace(self):
        return self.replay.trace

    @property
    def counts(self):
        return self.replay.counts

    @property
    def gate(self) -> PlausibilityGate:
        return self.replay.pipeline.gate

    def levels(self) -> list[tuple[float, str]]:
        return [(t, state) for t, kind, state in compact(self.events, ("level",))]

    def warning_at(self, index: int) -> int:
        return self.trace.warning[index]

    def first_index_warning(self, level_index: int) -> int | None:
        return next((i for i, w in enumerate(self.trace.warning) if w >= level_index), None)


def replayed(samples, config: Config = BENANGA, kind: str = "level") -> Replayed:
    events: list[Event] = []
    replay = Replay(config, ReplayOptions(value_kind=kind), keep_trace=True)
    replay.feed(samples, events.append)
    return Replayed(events, replay)


class Recording:
    """Builds (time, value) rows: water, objects, codes (None) and silences (no rows)."""

    def __init__(self, start: float = 1_700_000_000.0, every: float = 10.0):
        self.t = start
        self.every = every
        self.rows: list[tuple[float, float | None]] = []

    def add(self, value: float | None) -> Recording:
        self.rows.append((self.t, value))
        self.t += self.every
        return self

    def repeat(
        self,
        value: float | None,
        seconds: float,
        jitter: random.Random | None = None,
        amplitude: float = 0.003,
    ) -> Recording:
        """`value` every sample for `seconds`; with `jitter`, each reading scattered by up to
        `amplitude` (real echoes are never perfectly still, and a still one raises `stuck`)."""
        for _ in range(max(1, round(seconds / self.every))):
            if jitter is None or value is None:
                self.add(value)
            else:
                self.add(round(value + jitter.uniform(-amplitude, amplitude), 4))
        return self

    def silence(self, seconds: float) -> Recording:
        self.t += seconds
        return self

    def index(self) -> int:
        return len(self.rows)


def no_warning_ever(run: Replayed) -> None:
    assert run.levels() == [], run.levels()
    assert max(run.trace.warning, default=0) == 0
    assert run.counts.siren_on_s == 0.0
    assert [e for e in run.events if e.kind in ("siren", "rate")] == []


# -- the two recordings of the issue -----------------------------------------------------------


def test_a_flood_after_a_reflection_across_a_silence_is_warned_on_time():
    """Steady 7.00 m for 10 min, 5 min of no echo, one reflection reading 5.00 m, then the water
    rising from 7.00 to 9.00 m at 1 m/h. The old gate took the reflection as its anchor and
    refused all 720 true readings: Normal while the water passed every level."""
    record = Recording(start=0.0)
    record.repeat(7.00, 10 * MINUTE).repeat(None, 5 * MINUTE).add(5.00)
    rise_start = record.t
    while True:
        level = 7.00 + (record.t - rise_start) / HOUR
        if level > 9.0:
            break
        record.add(round(level, 4))
    run = replayed(record.rows)
    assert [state for _, state in run.levels()] == ["waspada", "siaga", "awas"]
    for (when, _), threshold in zip(run.levels(), THRESHOLDS):
        crossing = next(
            t for t, v in record.rows if v is not None and t > rise_start and v >= threshold
        )
        # The rolling median of 5 lags two samples behind the readings.
        assert 0 <= when - crossing <= 2 * record.every, (threshold, when, crossing)
    assert run.counts.implausible == 1 and run.counts.accepted == len(record.rows) - 30 - 1 - 2


def test_a_single_high_reading_then_a_spike_never_sound_anything():
    """Steady 6.900 m; one reading of 7.030; 6.894/6.896 alternating; one spike of 8.600; the
    same again. The old gate took 7.03 as its anchor, refused the water for five minutes and
    then took the spike as the whole median: Awas with a continuous siren."""
    record = Recording(start=0.0)
    record.repeat(6.900, 100.0).add(7.030)
    for i in range(29):
        record.add(6.894 if i % 2 == 0 else 6.896)
    record.add(8.600)
    for i in range(39):
        record.add(6.894 if i % 2 else 6.896)
    assert len(record.rows) == 80
    run = replayed(record.rows)
    assert run.events == []
    assert (run.counts.accepted, run.counts.implausible, run.counts.acquiring) == (76, 2, 2)
    assert max(s for s in run.trace.smoothed if s is not None) <= 6.900


# -- the gate's own rules ----------------------------------------------------------------------


def gate() -> PlausibilityGate:
    return PlausibilityGate(max_rate_m_per_min=0.025, noise_m=0.05, acquire_samples=1)


def judge_all(g: PlausibilityGate, rows) -> list[int]:
    verdicts = []
    for t, level in rows:
        g.note_sample(t)
        verdicts.append(g.judge(t, level))
    return verdicts


def test_an_object_in_the_beam_for_hours_never_becomes_a_level():
    g = gate()
    steady = [(10.0 * i, 7.00) for i in range(30)]
    block = [(300.0 + 10.0 * i, 10.15) for i in range(6 * 360)]  # six hours at the face
    verdicts = judge_all(g, steady + block)
    assert set(verdicts[30:]) == {REJECTED}
    # The object goes; the water has risen 0.20 m meanwhile, well within the allowed rate.
    assert judge_all(g, [(300.0 + 6 * HOUR, 7.20), (310.0 + 6 * HOUR, 7.20)]) == [
        UNCONFIRMED,
        ACCEPTED,
    ]


def test_a_rise_in_jumps_faster_than_the_site_allows_is_refused_for_as_long_as_it_lasts():
    g = gate()
    steady = [(10.0 * i, 7.00) for i in range(30)]
    # 1 m/min in steps of 17 cm every 10 s: every reading is a jump no water could make.
    too_fast = [(300.0 + 10.0 * i, 7.00 + i / 6) for i in range(1, 60)]
    assert set(judge_all(g, steady + too_fast)[30:]) == {REJECTED}


def test_a_smooth_ramp_is_followed_whatever_its_rate():
    """Steps within noise_m are the water moving: the rate limit judges jumps, and a smooth
    ramp faster than the estimate says the estimate was wrong, not that the water is not
    there (refusing it would refuse a real flood for as long as it lasts)."""
    g = gate()
    ramp = [(10.0 * i, 7.00 + 0.1 * i / 6) for i in range(120)]  # 6 m/h in 1.7 cm steps
    assert set(judge_all(g, ramp)) == {ACCEPTED}


def test_one_outlier_that_fits_cannot_capture_the_reference():
    g = gate()
    verdicts = judge_all(
        g,
        [(10.0 * i, 6.90) for i in range(10)]
        + [(100.0, 6.94)]
        + [(110.0 + 10.0 * i, 6.894 + 0.002 * (i % 2)) for i in range(30)],
    )
    assert set(verdicts) == {ACCEPTED}
    assert g.anchor_m == pytest.approx(6.895, abs=0.002)


def test_a_jump_across_a_silence_waits_for_the_next_reading():
    g = gate()
    judge_all(g, [(10.0 * i, 7.00) for i in range(10)])
    # An hour of silence: the water could be 1.5 m away, so 7.60 is possible but not proven.
    assert judge_all(g, [(3690.0, 7.60)]) == [UNCONFIRMED]
    assert g.awaiting_confirmation
    assert judge_all(g, [(3700.0, 7.61)]) == [ACCEPTED]
    assert g.adopted == [(3690.0, 7.60), (3700.0, 7.61)] and not g.returned


def test_an_unconfirmed_jump_is_withdrawn_when_the_water_is_still_there():
    g = gate()
    judge_all(g, [(10.0 * i, 7.00) for i in range(10)])
    assert judge_all(g, [(3690.0, 8.00), (3700.0, 7.01)]) == [UNCONFIRMED, ACCEPTED]
    assert (g.withdrawn_since, g.withdrawn_count, g.awaiting_confirmation) == (3690.0, 1, False)


def test_confirmation_must_come_soon_so_lone_echoes_in_a_silence_never_confirm_each_other():
    g = gate()
    judge_all(g, [(10.0 * i, 7.00) for i in range(10)])
    for i in range(1, 9):
        g.note_sample(3600.0 * i - 10)  # the gauge keeps its 10 s pace with no echo
        assert judge_all(g, [(3600.0 * i, 8.90)]) != [ACCEPTED]
    assert g.anchor_m == 7.00


def test_one_confirmed_reading_setting_is_believed_at_once():
    g = PlausibilityGate(
        max_rate_m_per_min=0.025, noise_m=0.05, acquire_samples=1, confirm_samples=1
    )
    judge_all(g, [(10.0 * i, 7.00) for i in range(10)])
    assert judge_all(g, [(36090.0, 9.00)]) == [ACCEPTED]


# -- the way back ------------------------------------------------------------------------------


def test_the_way_back_from_a_confirmed_object_to_the_water_behind_it():
    """Water, a silence, an object that stays long enough to be confirmed, then the water seen
    again behind it: the gate follows the water again and the object's readings are withdrawn."""
    record = Recording()
    record.repeat(distance(7.00), 30 * MINUTE).silence(2 * HOUR)
    object_start = record.index()
    record.repeat(OBJECT_M, 5 * MINUTE)
    back = record.index()
    record.repeat(distance(7.00), 30 * MINUTE)
    run = replayed(record.rows, kind="distance")
    accepted = run.trace.accepted
    assert accepted[object_start + 1] and not accepted[back] and not accepted[back + 1]
    assert all(accepted[back + 2 :])
    assert all(run.trace.withdrawn[object_start:back]) and not any(run.trace.withdrawn[back:])
    assert run.gate.returned_count == 1 and run.trace.smoothed[-1] == pytest.approx(7.00)


def test_the_way_back_needs_a_height_the_water_was_at():
    """A double echo at twice the distance, in a row, never takes over: the water was never
    there (a real ultrasonic artefact: ugliest_cyan_elephant has runs of six)."""
    record = Recording()
    record.repeat(distance(7.00), 30 * MINUTE)
    for _ in range(20):
        record.repeat(2 * distance(7.00), 60.0).repeat(distance(7.00), 60.0)
    run = replayed(record.rows, kind="distance")
    assert run.gate.returned_count == 0 and run.trace.smoothed[-1] == pytest.approx(7.00)


def test_an_object_nearer_than_the_water_never_takes_over_even_at_a_former_height():
    """The water fell from 8.90 m to 7.00 m; an object then sits at 8.90 m (where the water once
    was) for an hour: nearer than the water, so it is an object however long it stays."""
    record = Recording()
    for i in range(1, 190 * 6):  # 8.90 -> 7.00 m over 3 h 10 min (0.6 m/h)
        record.add(distance(8.90 - 0.6 * i * 10 / HOUR))
    record.repeat(distance(7.00), 10 * MINUTE).repeat(OBJECT_M, HOUR).repeat(distance(7.00), 60)
    run = replayed(record.rows, kind="distance")
    assert run.gate.returned_count == 0 and run.trace.smoothed[-1] == pytest.approx(7.00)


# -- the synthetic patterns --------------------------------------------------------------------


def known_object(record: Recording, seed: int, visits: int = 6) -> None:
    """Water at 7.00 m with an object that comes and goes (1-3 readings, every few minutes),
    so the gauge has seen it before the gap that follows."""
    rnd = random.Random(seed)
    for _ in range(visits):
        record.repeat(distance(7.00), rnd.uniform(2, 10) * MINUTE)
        record.repeat(OBJECT_M + rnd.uniform(-0.01, 0.01), rnd.choice([10, 20, 30]))
    record.repeat(distance(7.00), 5 * MINUTE)


@pytest.mark.parametrize("gap_s", [30 * MINUTE, 2 * HOUR, 10 * HOUR])
@pytest.mark.parametrize("gap_kind", ["codes", "silence"])
@pytest.mark.parametrize("object_s", [10.0, 30 * MINUTE])
def test_an_object_after_a_gap_never_warns(gap_s, gap_kind, object_s):
    """star_bee's structure: an object that comes and goes; a gap of no valid readings; the
    first readings after it are the object (once, or for half an hour); then the water."""
    record = Recording()
    known_object(record, seed=int(gap_s))
    if gap_kind == "codes":
        record.repeat(None, gap_s)
    else:
        record.silence(gap_s)
    record.repeat(OBJECT_M, object_s).repeat(distance(7.00), HOUR)
    run = replayed(record.rows, kind="distance")
    no_warning_ever(run)
    assert run.trace.accepted[-1] and run.trace.smoothed[-1] == pytest.approx(7.00)


def test_a_first_time_object_after_a_short_gap_is_refused_by_the_rate_alone():
    """Never seen before, after 30 min of codes, for half an hour: 1.9 m in 30 min is 3.8 m/h,
    more than the reservoir can do."""
    record = Recording()
    record.repeat(distance(7.00), 30 * MINUTE).repeat(None, 30 * MINUTE)
    record.repeat(OBJECT_M, 30 * MINUTE).repeat(distance(7.00), HOUR)
    run = replayed(record.rows, kind="distance")
    no_warning_ever(run)
    assert run.counts.implausible == 180


def test_a_first_time_object_after_a_long_silence_that_stays_is_taken_as_water_then_let_go():
    """The limit, stated: never seen before, after two hours of silence (the water could have
    risen 3 m), and it stays. Nothing tells it from a flood that came while the gauge was
    silent, so it warns after the confirming reading. When the water is seen again behind it,
    the gate goes back to the water and the warning steps down with the normal off-delay."""
    record = Recording()
    record.repeat(distance(7.00), 30 * MINUTE).silence(2 * HOUR)
    appears = record.t
    record.repeat(OBJECT_M, 20 * MINUTE)
    back = record.t
    record.repeat(distance(7.00), HOUR)
    run = replayed(record.rows, kind="distance")
    assert run.levels() == [
        (appears + 10, "awas"),
        (back + 20 + BENANGA.alarm.off_delay_s, "normal"),
    ]


def test_lone_echoes_near_the_sensor_face_amid_codes_never_warn():
    rnd = random.Random(5)
    record = Recording()
    record.repeat(distance(7.00), 30 * MINUTE)
    for _ in range(40):  # 12-30 hours of no echo, a lone echo now and then
        record.repeat(None, rnd.uniform(15, 45) * MINUTE)
        record.add(rnd.uniform(0.30, 0.40))  # a web or an insect at the face: level ~10.05 m
    record.repeat(distance(7.00), HOUR)
    run = replayed(record.rows, kind="distance")
    no_warning_ever(run)
    assert run.trace.accepted[-1]


def test_a_single_street_echo_after_a_long_object_block_never_warns():
    rnd = random.Random(4)
    record = Recording()
    record.repeat(distance(7.00), 30 * MINUTE, rnd).repeat(OBJECT_M, 6 * HOUR, rnd)
    record.add(distance(7.00)).repeat(OBJECT_M, 6 * HOUR, rnd).repeat(distance(7.00), HOUR, rnd)
    run = replayed(record.rows, kind="distance")
    no_warning_ever(run)
    # Each block raises `implausible` (the water is not seen); each sight of the water clears it.
    faults = [(e.data["fault"], e.data["active"]) for e in run.events if e.kind == "fault"]
    assert faults == [("implausible", True), ("implausible", False)] * 2


def test_an_object_that_comes_and_goes_for_days_is_learned_and_never_warns():
    rnd = random.Random(11)
    record = Recording(every=60.0)
    while record.t < 1_700_000_000.0 + 4 * 24 * HOUR:
        record.repeat(distance(7.00), rnd.uniform(2, 20) * MINUTE, rnd)
        record.repeat(OBJECT_M, rnd.choice([60.0] * 5 + [600.0, 3 * HOUR]), rnd)
        if rnd.random() < 0.1:
            record.repeat(None, rnd.uniform(5, 40) * MINUTE)  # no echo for a while
    run = replayed(record.rows, kind="distance")
    no_warning_ever(run)
    learned = run.gate.echoes.learned()
    assert learned and learned[0].level_m == pytest.approx(ELEVATION - OBJECT_M, abs=0.02)
    assert learned[0].episodes > 50
    assert f"{OBJECT_M:.3f} m from the sensor" in run.counts.summary()


def test_a_real_rise_after_a_ten_hour_silence_warns_on_the_confirming_reading():
    record = Recording()
    record.repeat(distance(7.00), 30 * MINUTE).silence(10 * HOUR)
    back = record.t
    for i in range(60):  # far above awas, still rising 1 cm/h
        record.add(distance(9.00 + 0.01 * i * 10 / HOUR))
    run = replayed(record.rows, kind="distance")
    assert run.levels() == [(back + 10, "awas")]  # the daemon takes that reading 2 s later
    at_once = replayed(record.rows, config_from({"filter": {"confirm_samples": 1}}), "distance")
    assert at_once.levels() == [(back, "awas")]


def test_a_real_rise_through_a_learned_false_echo_is_warned_on_time():
    """A fixed echo at 7.70 m (2.70 m from the sensor, between waspada and siaga) comes and goes
    and is learned; then the water rises through it at 30 cm/h."""
    echo_distance = distance(7.70)
    rnd = random.Random(3)
    record = Recording()
    for _ in range(8):
        record.repeat(distance(7.00), rnd.uniform(3, 10) * MINUTE).repeat(echo_distance, 20)
    rise_start = record.t
    truth = []
    while True:
        level = 7.00 + 0.30 * (record.t - rise_start) / HOUR
        if level > 8.20:
            break
        # The echo keeps showing now and then while the water rises.
        value = echo_distance if rnd.random() < 0.05 else distance(level)
        truth.append((record.index(), level))
        record.add(value)
    run = replayed(record.rows, kind="distance")
    assert run.gate.echoes.learned()
    for level_index, threshold in ((1, 7.50), (2, 7.90)):
        crossing = next(i for i, level in truth if level >= threshold)
        warned = run.first_index_warning(level_index)
        assert warned is not None and warned <= crossing + 2, (threshold, warned, crossing)


@pytest.mark.parametrize("seed", range(5))
def test_a_slow_flood_amid_5_cm_noise_is_warned_within_two_samples_of_a_steady_crossing(seed):
    """5 cm/h with every reading scattered by up to 5 cm. The rate alarm is off: this is
    about the level crossing, which the rate alarm would otherwise anticipate."""
    rnd = random.Random(seed)
    record = Recording()
    values = []
    while True:
        level = 7.20 + 0.05 * (record.t - 1_700_000_000.0) / HOUR  # 5 cm/h
        if level > 7.80:
            break
        value = level + rnd.uniform(-0.05, 0.05)
        values.append(value)
        record.add(round(value, 4))
    run = replayed(record.rows, config_from({"alarm": {"rate": {"enabled": False}}}))
    # The steady crossing: from this sample on, every reading is above waspada.
    steady = next(i for i in range(len(values)) if all(v >= 7.50 for v in values[i:]))
    warned = run.first_index_warning(1)
    assert warned is not None and warned <= steady + 2, (warned, steady)
    # A reading at the edge of the scatter is refused now and then; the median does not care.
    assert run.counts.implausible < len(values) * 0.03
    assert run.levels()[0][1] == "waspada" and "siaga" not in [s for _, s in run.levels()]


# -- faults cannot lock a false warning in -----------------------------------------------------


def test_a_gauge_lost_at_the_crest_behind_an_object_keeps_awas():
    record = Recording()
    record.repeat(8.60, 10 * MINUTE).repeat(10.15, 3 * HOUR)  # awas, then something at the face
    run = replayed(record.rows)
    assert run.levels() == [(record.rows[2][0], "awas")]
    assert run.trace.warning[-1] == 3
    assert ("implausible", True) in [
        (e.data["fault"], e.data["active"]) for e in run.events if e.kind == "fault"
    ]


def test_an_echo_that_raised_awas_lets_it_go_while_it_keeps_coming_back():
    """A first-time object after a silence raises Awas; the water is then seen behind it, but
    the object keeps coming back for hours (more often than not). Those returns are at a
    height the gate has withdrawn, so the `implausible` fault they raise does not hold the
    warning: it steps down with the normal off-delay."""
    rnd = random.Random(2)
    record = Recording(every=60.0)
    record.repeat(distance(7.00), 30 * MINUTE).silence(2 * HOUR).repeat(OBJECT_M, 10 * MINUTE)
    record.repeat(distance(7.00), 3 * MINUTE)
    back = record.t
    for _ in range(60):
        record.repeat(OBJECT_M, rnd.choice([2, 6, 12]) * MINUTE).add(distance(7.00))
    run = replayed(record.rows, kind="distance")
    states = [state for _, state in run.levels()]
    assert states == ["awas", "normal"]
    assert run.levels()[1][0] <= back + BENANGA.alarm.off_delay_s + 60 * MINUTE
    assert run.counts.false_echo > 100


# -- invariants, over generated sequences -------------------------------------------------------

# 150 examples each in the test run; GAUGE_HYPOTHESIS_EXAMPLES=5000 for a long hunt.
LEVEL_SETTINGS = settings(
    max_examples=int(os.environ.get("GAUGE_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
gaps = st.one_of(st.just(0.0), st.floats(30.0, 12 * HOUR))
any_value = st.floats(-3.0, 15.0)


@LEVEL_SETTINGS
@given(
    steady=st.floats(6.8, 7.4),
    before=st.integers(5, 60),
    gap1=gaps,
    outlier=any_value,
    gap2=gaps,
    rise_m_per_h=st.floats(0.1, 1.45),
    after=st.integers(0, 30),
    every=st.sampled_from([10.0, 60.0]),
)
@pytest.mark.slow
def test_one_outlier_of_any_size_never_stops_a_following_rise_from_being_warned_on_time(
    steady, before, gap1, outlier, gap2, rise_m_per_h, after, every
):
    """Steady water, an outlier (before or after a silence, or neither), then the water rises at
    an allowed rate (it may already be rising during the second silence). Every level is warned
    within three samples of the first sample at or above it (one to confirm a jump across a
    silence, two for the median)."""
    record = Recording(every=every)
    record.repeat(steady, every * before).silence(gap1).add(outlier)
    rise_start = record.t + every * after  # the water starts rising soon after the outlier
    record.silence(gap2)
    truth = []
    while True:
        level = min(8.7, steady + rise_m_per_h * max(0.0, record.t - rise_start) / HOUR)
        truth.append((record.index(), level))
        record.add(level)
        if level >= 8.7 and len(truth) > 10:
            break
    run = replayed(record.rows)
    for level_index, threshold in enumerate(THRESHOLDS, start=1):
        crossing = next(i for i, level in truth if level >= threshold)
        warned = run.first_index_warning(level_index)
        assert warned is not None and warned <= crossing + 3, (threshold, warned, crossing)


@LEVEL_SETTINGS
@given(
    steady=st.floats(5.0, 7.40),
    jitter=st.floats(0.0, 0.01),
    before=st.integers(5, 100),
    gap1=gaps,
    outlier=any_value,
    gap2=gaps,
    after=st.integers(5, 200),
    kind=st.sampled_from(["level", "distance"]),
    seed=st.integers(0, 1000),
)
@pytest.mark.slow
def test_one_outlier_of_any_size_in_a_steady_record_never_raises_the_warning(
    steady, jitter, before, gap1, outlier, gap2, after, kind, seed
):
    """Jitter up to 1 cm, what an HC-SR04 burst median shows (at 2 cm the rate alarm's first
    estimate, over half its window after start-up, trips on its own now and then)."""
    rnd = random.Random(seed)

    def value(level: float) -> float:
        return distance(level) if kind == "distance" else level

    if kind == "distance":
        assume(0.25 <= distance(outlier) <= 4.0)  # a valid range, else it is "no reading"
        # A steady record the sensor can see. Found by CI's hypothesis run (seed 372): water at
        # the edge of the range (4.008 m below the sensor, most readings out_of_range for an
        # hour), then a silence of 57 min and one reading 1.6 m higher: that is a rise across
        # a silence at an allowed rate, which DESIGN.md says is believed at once, and siaga
        # sounds. Whether a gauge that saw almost nothing before should wait for a second
        # reading is a field decision (see the closing note of issue #12's stop).
        assume(0.25 <= distance(steady + jitter) and distance(steady - jitter) <= 4.0)
    record = Recording()
    for _ in range(before):
        record.add(value(steady + rnd.uniform(-jitter, jitter)))
    record.silence(gap1).add(value(outlier)).silence(gap2)
    for _ in range(after):
        record.add(value(steady + rnd.uniform(-jitter, jitter)))
    run = replayed(record.rows, kind=kind)
    no_warning_ever(run)


disturbance = st.lists(
    st.tuples(st.floats(10.0, HOUR), st.one_of(st.none(), any_value)), min_size=1, max_size=40
)


@pytest.mark.slow
@LEVEL_SETTINGS
@given(
    steady=st.floats(6.0, 7.3),
    before=st.integers(10, 60),
    noise=disturbance,
    gap=st.floats(10.0, 3 * HOUR),
)
def test_after_any_disturbance_the_gate_recovers_and_the_warning_follows_the_water(
    steady, before, noise, gap
):
    """Steady water; then any finite disturbance (any values, any gaps, no readings); then the
    water at its steady level again. Within a few samples it is accepted again, and once the
    rate window and the off-delay have passed the warning is back to what the water implies
    (a disturbance the gate believed, two agreeing readings a silence apart, is a rise and
    fall of the water to the rate alarm): the gate never locks onto a value the readings have
    left."""
    record = Recording()
    record.repeat(steady, 10.0 * before)
    for gap_s, value in noise:
        record.silence(gap_s - 10.0).add(value)
    record.silence(gap)
    returned = record.index()
    alarm = BENANGA.alarm
    record.repeat(steady, alarm.rate.window_s + alarm.off_delay_s + 30 * MINUTE)
    run = replayed(record.rows)
    accepted = run.trace.accepted
    assert all(accepted[returned + 5 :]), accepted[returned : returned + 10]
    assert run.trace.smoothed[-1] == pytest.approx(steady, abs=1e-9)
    assert run.trace.warning[-1] == 0


@LEVEL_SETTINGS
@given(
    start=st.floats(6.0, 7.0),
    rise_m_per_h=st.floats(-1.45, 1.45),
    spacing=st.lists(st.floats(2.0, 2 * HOUR), min_size=5, max_size=300),
    jitter=st.floats(0.0, 0.02),
    seed=st.integers(0, 1000),
)
def test_water_moving_at_an_allowed_rate_is_always_followed(
    start, rise_m_per_h, spacing, jitter, seed
):
    """Any steady rise or fall at an allowed rate, sampled at any pace, with silences: no
    reading of it is ever refused, and the smoothed level stays within the noise and two
    samples' movement of the truth."""
    rnd = random.Random(seed)
    t, rows, truth = 0.0, [], []
    for step in [10.0] * 5 + spacing:
        t += step
        level = start + rise_m_per_h * t / HOUR
        truth.append(level)
        rows.append((t, level + rnd.uniform(-jitter, jitter)))
    run = replayed(rows)
    reasons = run.trace.reasons
    assert IMPLAUSIBLE not in reasons and FALSE_ECHO not in reasons
    accepted = [i for i, ok in enumerate(run.trace.accepted) if ok]
    window = range(accepted[-5] if len(accepted) >= 5 else 0, accepted[-1] + 1)
    low = min(truth[i] for i in window) - jitter - 1e-9
    high = max(truth[i] for i in window) + jitter + 1e-9
    assert low <= run.trace.smoothed[accepted[-1]] <= high
