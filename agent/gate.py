"""The plausibility gate: which readings are the water, and which are something else.

Pure: no I/O, no clock; `now` is passed in. The pipeline asks `judge(now, level)` for every valid
reading and tells `note_sample(now)` about every sample (valid or not), so the gate knows the
gauge's own pace.

Why it is more than "reject what moved too fast": a gate with one anchor can be captured. One
reading that the envelope admits (a reflection after a silence, a spike that fits) becomes the
anchor, the water is then "the jump" and is rejected for as long as it is there. This gate keeps
several hypotheses and has a way back from each of them:

1. **Follow.** A reading within `noise_m` (plus what the water could move in a few normal
   sample intervals) of the water level the gate follows is accepted. The level it compares with
   is the median of the last few accepted readings, so one accepted outlier cannot move it.
2. **Confirm a jump across a silence.** A reading further away that the water could only have
   reached because the gauge was silent (no echo, codes, an outage) is *unconfirmed*. It is
   believed when the next reading agrees with it (the daemon takes that reading at the alarm
   rate); if the next reading is back at the old level, it is withdrawn. Until then it moves
   neither the smoothed level nor the warning.
3. **Reject what no water could do.** A reading further than the water could have moved is
   rejected, and so is every later reading at the same height (a band): an object in the beam
   stays rejected for as long as it is there and never becomes the level by waiting.
4. **Learn false echoes.** Bands that appear and vanish again and again, far from the water, are
   learned (`EchoMemory`). A reading in a learned band is not believed after a silence either;
   only water rising into it gradually (step 1) is.
5. **Always find the way back.** A band takes over from the level the gate follows when its
   readings are at a height the water was recently at, and either `acquire_samples` of them
   came in a row or (distance sensors) they keep coming *behind* a followed level that never
   moved: an object in the beam always reads nearer than the water behind it. A band at a
   height the water never was (a double echo at twice the distance, a reflection) never takes
   over. The readings the gate had followed since are withdrawn.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field

# Verdicts of `judge`.
ACCEPTED = 0
UNCONFIRMED = 1  # a jump across a silence, waiting for the next reading
REJECTED = 2  # faster than the site allows, or at the height of a rejected band
FALSE_ECHO = 3  # at the height of a learned false echo
ACQUIRING = 4  # start-up: not enough agreeing readings yet

REFERENCE_SAMPLES = 5  # accepted readings whose median is the level the gate compares with
SILENCE_SAMPLES = 3  # more than this many normal sample intervals without the water: a silence
SPACING_SAMPLES = 9  # sample intervals whose median is the gauge's normal pace
MAX_BANDS = 8  # rejected heights remembered at once
BAND_FORGET_S = 24 * 3600.0  # a rejected height not seen for this long is forgotten
BAND_CENTRE_WEIGHT = 20  # a band's centre is the running mean of up to this many readings
TRAJECTORY_POINTS = 64  # heights the water was recently at (for the way back)
TRAJECTORY_S = 48 * 3600.0
MOVED_NOISES = 2.0  # followed level moved this many noise_m by continuity: it is water
ECHO_SEPARATION_NOISES = (
    4.0  # an episode counts as a false echo this far (in noise_m) from the water
)
ECHO_LEARN_EPISODES = 3
ECHO_FORGET_S = 14 * 24 * 3600.0
ECHO_CAPACITY = 16


@dataclass(slots=True)
class FalseEcho:
    """A height at which readings keep appearing and vanishing: not the water."""

    level_m: float
    episodes: int
    first_seen: float
    last_seen: float
    longest_s: float

    @property
    def learned(self) -> bool:
        return self.episodes >= ECHO_LEARN_EPISODES


class EchoMemory:
    """Heights of echoes that came and went, with how often; learned after a few episodes."""

    __slots__ = ("tolerance_m", "echoes")

    def __init__(self, tolerance_m: float):
        self.tolerance_m = tolerance_m
        self.echoes: list[FalseEcho] = []

    def _near(self, level: float) -> FalseEcho | None:
        tolerance = self.tolerance_m
        for echo in self.echoes:
            if abs(echo.level_m - level) <= tolerance:
                return echo
        return None

    def record(self, level: float, start: float, end: float) -> None:
        """One episode: something read at `level` from `start` to `end`, then went away."""
        self._forget(end)
        echo = self._near(level)
        if echo is None:
            if len(self.echoes) >= ECHO_CAPACITY:
                # Make room: the least learned, then the longest unseen, goes first.
                self.echoes.remove(min(self.echoes, key=lambda e: (e.episodes, e.last_seen)))
            self.echoes.append(FalseEcho(level, 1, start, end, end - start))
            return
        # The centre follows its episodes slowly: an echo is at a fixed distance.
        echo.level_m += (level - echo.level_m) / min(echo.episodes + 1, BAND_CENTRE_WEIGHT)
        echo.episodes += 1
        echo.last_seen = max(echo.last_seen, end)
        echo.longest_s = max(echo.longest_s, end - start)

    def learned_at(self, level: float) -> FalseEcho | None:
        echo = self._near(level)
        return echo if echo is not None and echo.learned else None

    def _forget(self, now: float) -> None:
        if self.echoes:
            self.echoes = [e for e in self.echoes if now - e.last_seen <= ECHO_FORGET_S]

    def learned(self) -> list[FalseEcho]:
        return sorted((e for e in self.echoes if e.learned), key=lambda e: -e.episodes)


@dataclass(slots=True)
class Band:
    """Readings at one height that the gate did not take as water."""

    centre: float
    first_t: float
    last_t: float
    count: int = 1  # readings in it since it began
    run: int = 1  # of those, in a row with no water reading between
    known_echo: bool = False
    episode_start: float = 0.0
    episode_open: bool = True  # seen since the water was last seen
    recent: deque = field(default_factory=lambda: deque(maxlen=REFERENCE_SAMPLES))

    def add(self, now: float, level: float) -> None:
        self.count += 1
        self.run += 1
        self.centre += (level - self.centre) / min(self.count, BAND_CENTRE_WEIGHT)
        self.last_t = now
        if not self.episode_open:
            self.episode_open = True
            self.episode_start = now
        self.recent.append((now, level))


class PlausibilityGate:
    """Decides for each valid reading whether it is the water (see the module docstring).

    After `judge` returns ACCEPTED, `adopted` is None when the reading simply continues the
    level being followed, or the readings (oldest first, the current one last) that the
    smoothing must restart from because the gate now follows another level; `returned` says
    whether that was a way back (the readings followed since `withdrawn_since` were not water).
    """

    __slots__ = (
        "rate_per_s",
        "noise_m",
        "acquire_samples",
        "confirm_samples",
        "return_samples",
        "objects_read_high",
        "acquiring",
        "disagreed",
        "window",
        "sorted_levels",
        "last_t",
        "established_t",
        "established_level",
        "moved",
        "pending",
        "bands",
        "open_episodes",
        "trajectory",
        "echoes",
        "intervals",
        "last_sample_t",
        "samples",
        "pending_sample",
        "adopted",
        "returned",
        "withdrawn_since",
        "withdrawn_count",
        "confirmed_count",
        "returned_count",
    )

    def __init__(
        self,
        max_rate_m_per_min: float,
        noise_m: float,
        acquire_samples: int,
        confirm_samples: int = 2,
        objects_read_high: bool = False,
    ):
        self.rate_per_s = max_rate_m_per_min / 60.0
        self.noise_m = noise_m
        self.acquire_samples = acquire_samples
        self.confirm_samples = confirm_samples
        # A way back reverses an earlier decision: it needs at least as much evidence.
        self.return_samples = max(acquire_samples, confirm_samples, 2)
        # Distance sensors: an object in the beam reads nearer, i.e. as a higher level.
        self.objects_read_high = objects_read_high
        self.acquiring: list[tuple[float, float]] = []
        self.disagreed = False  # the last start-up reading contradicted the one before
        self.window: deque[tuple[float, float]] = deque()  # accepted (t, level), oldest first
        self.sorted_levels: list[float] = []
        self.last_t = 0.0
        self.established_t = 0.0
        self.established_level = 0.0
        self.moved = False  # the followed level has moved by continuity: real water
        self.pending: list[tuple[float, float]] = []  # an unconfirmed jump
        self.bands: list[Band] = []
        self.open_episodes = False
        # Heights the water was at: [level, first seen, last seen, accepted readings there].
        self.trajectory: deque[list[float]] = deque(maxlen=TRAJECTORY_POINTS)
        self.echoes = EchoMemory(noise_m)
        self.intervals: deque[float] = deque(maxlen=SPACING_SAMPLES)
        self.last_sample_t: float | None = None
        self.samples = 0  # samples seen, valid or not
        self.pending_sample = 0  # the sample number of the last unconfirmed reading
        self.adopted: list[tuple[float, float]] | None = None
        self.returned = False
        self.withdrawn_since: float | None = None
        self.withdrawn_count = 0  # readings withdrawn so far (unconfirmed and followed)
        self.confirmed_count = 0  # jumps across a silence that were confirmed
        self.returned_count = 0  # ways back taken

    # -- what the rest of the gauge may ask ------------------------------------------------------
    @property
    def anchor_m(self) -> float | None:
        """The level the gate follows (median of the last accepted readings), None at start-up."""
        if not self.sorted_levels:
            return None
        levels = self.sorted_levels
        return levels[(len(levels) - 1) // 2]

    @property
    def awaiting_confirmation(self) -> bool:
        return bool(self.pending)

    # -- pace --------------------------------------------------------------------------------
    def note_sample(self, now: float) -> None:
        """Every sample, valid or not: the gauge's normal pace is the median interval."""
        last = self.last_sample_t
        if last is not None and now > last:
            self.intervals.append(now - last)
        self.last_sample_t = now
        self.samples += 1

    def _spacing(self) -> float:
        intervals = self.intervals
        if not intervals:
            return 0.0
        ordered = sorted(intervals)
        return ordered[(len(ordered) - 1) // 2]

    # -- judging -----------------------------------------------------------------------------
    def judge(self, now: float, level: float) -> int:
        self.adopted = None
        self.withdrawn_since = None
        if not self.window:
            return self._acquire(now, level)
        levels = self.sorted_levels
        reference = levels[(len(levels) - 1) // 2]
        distance = abs(level - reference)
        noise = self.noise_m
        if distance <= noise:
            return self._follow(now, level)
        # How far the reading is from the water: from the median, less the scatter the recent
        # readings show themselves (the sensor's jitter, or the readings a steady rise leaves
        # the median behind), or from the latest accepted reading, whichever is nearer. The
        # median is what one outlier cannot move; the latest is where a moving water is now.
        distance = min(distance - (levels[-1] - levels[0]) / 2.0, abs(level - self.window[-1][1]))
        if distance <= noise:
            return self._follow(now, level)  # water moving at its own pace, also through a band
        rate = self.rate_per_s
        silence_s = SILENCE_SAMPLES * self._spacing()
        since = now - self.last_t

        pending = self.pending
        if pending:
            last_t, last_level = pending[-1]
            # The next look must be at the same height (what the water moves at its pace), and
            # come soon; or, if the gauge did not look at all in between (a silent recorder),
            # whenever it comes. Looks that saw nothing between two lone echoes mean they do
            # not confirm each other.
            next_look = now - last_t <= silence_s or self.samples == self.pending_sample + 1
            if next_look and abs(level - last_level) <= noise + rate * min(now - last_t, silence_s):
                pending.append((now, level))
                self.pending_sample = self.samples
                if len(pending) >= self.confirm_samples:
                    return self._switch(now, pending, returned=False)
                return UNCONFIRMED
            self._withdraw_pending(reference, contradicted=False)

        band = self._band_at(now, level, silence_s, reference)
        if band is not None:
            # Still at a height already refused (an object in the beam): refused again,
            # however long it stays, unless it is the way back.
            band.add(now, level)
            self.open_episodes = True
            if self._may_take_over(band, reference, now):
                return self._switch(now, list(band.recent), returned=True, band=band)
            return FALSE_ECHO if band.known_echo else REJECTED

        known_echo = self.echoes.learned_at(level) is not None
        if not known_echo:
            if distance <= noise + rate * min(since, silence_s):
                return self._follow(now, level)  # within what the water can move at its pace
            if distance <= noise + rate * since:
                # Only a silence lets the water have got there: believe it when the next agrees.
                self.pending = [(now, level)]
                self.pending_sample = self.samples
                if self.confirm_samples <= 1:
                    return self._switch(now, self.pending, returned=False)
                return UNCONFIRMED
        band = Band(level, now, now, known_echo=known_echo, episode_start=now)
        band.recent.append((now, level))
        self._remember_band(band)
        if self._may_take_over(band, reference, now):
            return self._switch(now, list(band.recent), returned=True, band=band)
        return FALSE_ECHO if known_echo else REJECTED

    def _follow(self, now: float, level: float) -> int:
        """The reading continues the water: accept it and close what it disproves."""
        if self.pending:
            self._withdraw_pending(
                self.sorted_levels[(len(self.sorted_levels) - 1) // 2], contradicted=True
            )
        window, levels = self.window, self.sorted_levels
        if len(window) >= REFERENCE_SAMPLES:
            _, old = window.popleft()
            del levels[bisect_left(levels, old)]
        window.append((now, level))
        insort(levels, level)
        self.last_t = now
        reference = levels[(len(levels) - 1) // 2]
        if self.open_episodes:
            self._close_episodes(reference)
        if not self.moved and abs(reference - self.established_level) > MOVED_NOISES * self.noise_m:
            self.moved = True
        trajectory = self.trajectory
        if trajectory and abs(trajectory[-1][0] - reference) <= self.noise_m:
            point = trajectory[-1]
            point[2] = now
            point[3] += 1
        else:
            trajectory.append([reference, now, now, 1])
        return ACCEPTED

    def _close_episodes(self, reference: float) -> None:
        """The water is seen again: every band seen since was an episode that came and went."""
        for band in self.bands:
            band.run = 0
            if band.episode_open:
                band.episode_open = False
                if self._is_echo_height(band.centre, reference, band.last_t):
                    self.echoes.record(band.centre, band.episode_start, band.last_t)
                    if self.echoes.learned_at(band.centre) is not None:
                        band.known_echo = True
        self.open_episodes = False

    def _is_echo_height(self, level: float, reference: float, now: float) -> bool:
        """Far from the water, and not a height the water was recently at (the water seen
        between an object's visits must never be learned as the echo)."""
        return (
            abs(level - reference) > ECHO_SEPARATION_NOISES * self.noise_m
            and self._trajectory_point(level, now) is None
        )

    def _withdraw_pending(self, reference: float, contradicted: bool) -> None:
        """Not confirmed. `contradicted`: the water was seen where it was, so the jump came and
        went (an echo episode); otherwise it just was not seen again in time."""
        pending = self.pending
        self.withdrawn_since = pending[0][0]
        self.withdrawn_count += len(pending)
        first_t, first_level = pending[0]
        if contradicted and self._is_echo_height(first_level, reference, first_t):
            self.echoes.record(first_level, first_t, pending[-1][0])
        self.pending = []

    def _band_at(self, now: float, level: float, silence_s: float, reference: float) -> Band | None:
        """The refused height this reading is at. A single refused reading seen before a
        silence proves nothing about what comes after it: it is forgotten then, so water that
        rose to that height while the gauge was silent is judged on its own (unless the water
        was at that height before: those readings add up towards the way back)."""
        noise = self.noise_m
        found = None
        forget = False
        for band in self.bands:
            age = now - band.last_t
            if age > BAND_FORGET_S or (
                band.count == 1
                and age > silence_s
                and self._trajectory_point(band.centre, now) is None
            ):
                if band.episode_open and self._is_echo_height(band.centre, reference, now):
                    self.echoes.record(band.centre, band.episode_start, band.last_t)
                band.count = 0  # marks it for forgetting below
                forget = True
            elif found is None and abs(band.centre - level) <= noise:
                found = band
        if forget:
            self.bands = [b for b in self.bands if b.count]
        return found

    def _remember_band(self, band: Band) -> None:
        bands = self.bands
        if len(bands) >= MAX_BANDS:
            bands.remove(min(bands, key=lambda b: b.last_t))
        bands.append(band)
        self.open_episodes = True

    def _may_take_over(self, band: Band, reference: float, now: float) -> bool:
        """The way back (rule 5 of the module docstring): the band is at a height the water
        was recently at, and either `return_samples` of its readings came in a row (no reading
        of the followed level between), or, for distance sensors, the followed level never
        moved and the band is behind it (an object that comes and goes in front of the water
        that is really there)."""
        if band.known_echo or band.count < self.return_samples:
            return False
        noise = self.noise_m
        if self.objects_read_high and band.centre > reference + noise:
            return False  # nearer than the water: an object, however long it stays
        if self._trajectory_point(band.centre, now) is None:
            return False  # not where the water was: a double echo, a reflection
        if band.run >= self.return_samples:
            return True
        return self.objects_read_high and not self.moved and band.centre < reference - noise

    def _trajectory_point(self, level: float, now: float) -> list | None:
        """The latest recent point of the water's path at this height, if any."""
        noise = self.noise_m
        for point in reversed(self.trajectory):
            if now - point[2] > TRAJECTORY_S:
                break
            if abs(point[0] - level) <= noise:
                return point
        return None

    def _switch(
        self,
        now: float,
        readings: list[tuple[float, float]],
        returned: bool,
        band: Band | None = None,
    ) -> int:
        """Follow another level from now on; `readings` (oldest first) become its history."""
        if returned:
            # The water is back at a height it was at: what the gate followed since it was
            # last there was not the water. Those heights are no place to come back to, and
            # the height it followed is an echo.
            assert band is not None, "a way back is to a band"
            point = self._trajectory_point(band.centre, now)
            left_at = point[2] if point is not None else self.established_t
            self.withdrawn_since = left_at
            kept: deque[list[float]] = deque(maxlen=TRAJECTORY_POINTS)
            for earlier in self.trajectory:
                if earlier[1] <= left_at:
                    kept.append(earlier)
                else:
                    self.withdrawn_count += int(earlier[3])
            self.trajectory = kept
            self.returned_count += 1
            self.bands.remove(band)
            abandoned = self.anchor_m
            if abandoned is not None and self._is_echo_height(abandoned, band.centre, now):
                self.echoes.record(abandoned, left_at, self.last_t)
                # Shown not to be the water: readings there now are an echo, not a mystery.
                echo = Band(
                    abandoned, now, now, known_echo=True, episode_start=now, episode_open=False
                )
                echo.run = 0
                self._remember_band(echo)
        else:
            self.confirmed_count += 1
        self.pending = []
        self._establish(readings)
        self.adopted = list(readings)
        self.returned = returned
        return ACCEPTED

    def _establish(self, readings: list[tuple[float, float]]) -> None:
        self.window = deque(readings[-REFERENCE_SAMPLES:])
        self.sorted_levels = sorted(level for _, level in self.window)
        self.last_t = readings[-1][0]
        self.established_t = readings[0][0]
        self.established_level = self.sorted_levels[(len(self.sorted_levels) - 1) // 2]
        self.moved = False
        for band in self.bands:
            band.run = 0
        self.trajectory.append(
            [self.established_level, self.established_t, self.last_t, len(readings)]
        )

    def _acquire(self, now: float, level: float) -> int:
        """Start-up: `acquire_samples` consecutive agreeing readings before the first level."""
        recent = self.acquiring
        if recent:
            last_t, last_level = recent[-1]
            self.disagreed = abs(level - last_level) > self.noise_m + self.rate_per_s * (
                now - last_t
            )
            if self.disagreed:
                recent.clear()
        recent.append((now, level))
        if len(recent) < self.acquire_samples:
            # Agreeing so far: just early. Contradicting the one before: not believed.
            return REJECTED if self.disagreed else ACQUIRING
        self._establish(recent[:])
        recent.clear()
        return ACCEPTED
