"""The configuration schema: frozen dataclasses whose defaults are the embedded configuration
(`gauge-agent run --simulate` uses it without a file), and the rule each value must meet.
Every key a file may hold is a field here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.i18n import N_, _

DEFAULT_CONFIG_PATH = Path("/etc/gauge-agent/config.toml")
CALIBRATION_FILE_NAME = "calibration.toml"
# WatchdogSec= in systemd/gauge-agent.service (a test keeps the two equal). Under systemd the
# daemon reads the real value from $WATCHDOG_USEC; check-config uses that when it is set.
UNIT_WATCHDOG_S = 60.0

LAMPS = ("off", "amber", "red", "red-blink")
SCENARIOS = ("calm", "flash-flood", "slow-rise", "noisy", "object-in-beam", "outage")
MODBUS_DATA_TYPES = ("int16", "uint16", "int32", "uint32", "float32")
PRESSURE_UNITS = ("m", "cm", "mm", "kPa", "bar", "mbar", "psi")


# A rule checks one value. It returns None when the value is fine, or the words for what is
# allowed, in the language chosen when it runs (so rules translate their words when they check).
Rule = Callable[[Any], "str | None"]


def _rule(check: Rule) -> dict:
    return {"check": check}


def between(low: float, high: float, what: str = "") -> Rule:
    """low <= value <= high. `what`, marked N_(), is a unit ("seconds") or a description
    ("a probability": the English starts with "a ")."""

    def check(value) -> str | None:
        if low <= value <= high:
            return None
        bounds = {"low": f"{low:g}", "high": f"{high:g}", "what": _(what) if what else ""}
        if what.startswith("a "):
            return _("must be {what} from {low} to {high}").format(**bounds)
        if what:
            return _("must be from {low} to {high} {what}").format(**bounds)
        return _("must be from {low} to {high}").format(**bounds)

    check.range = (low, high)  # type: ignore[attr-defined]  # config.toml shows it
    return check


def magnitude(low: float, high: float) -> Rule:
    """|value| within [low, high], either sign (a scale or a sensor's code may be negative)."""
    return lambda value: (
        None
        if low <= abs(value) <= high
        else (
            _("must be from {low} to {high} or from {negative_high} to {negative_low}").format(
                low=f"{low:g}",
                high=f"{high:g}",
                negative_high=f"{-high:g}",
                negative_low=f"{-low:g}",
            )
            if low
            else _("must be from {low} to {high}").format(low=f"{-high:g}", high=f"{high:g}")
        )
    )


def each(rule: Rule) -> Rule:
    """A rule for every item of a list."""

    def check(values) -> str | None:
        for index, value in enumerate(values):
            complaint = rule(value)
            if complaint:
                return _("(item {index}: {value}) {complaint}").format(
                    index=index, value=value, complaint=complaint
                )
        return None

    return check


DAY_S = 86400.0
# Any level in a site's datum: a local zero or metres above sea level, on Earth.
ELEVATION = between(-500, 9000, N_("m (a level in the site's datum)"))


def one_of(*choices: str) -> Rule:
    allowed = ", ".join(repr(c) for c in choices)
    return lambda value: (
        None if value in choices else _("must be one of {choices}").format(choices=allowed)
    )


bcm_pin = between(0, 27, N_("a BCM GPIO number"))


def sensor_kind(value: str) -> str | None:
    """One of the kinds the driver registry (agent.sensors) found."""
    # Imported here: the registry imports the driver modules, and they import this module.
    from agent.sensors import sensor_kinds

    return one_of(*sensor_kinds())(value)


def uplink_format(value: str) -> str | None:
    """One of the formats the transport registry (agent.transports) found."""
    from agent.transports import transport_formats  # as above: the transports import this

    return one_of(*transport_formats())(value)


def level_name(value: str) -> str | None:
    if value == "normal":
        return _("'normal' is the state below the first level; choose another name")
    return (
        None
        if re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", value)
        else _("must be a lower-case name (letters, digits, '-', '_'), e.g. 'siaga'")
    )


# --------------------------------------------------------------------------------------------
# Schema (defaults = the embedded configuration)


@dataclass(frozen=True)
class StationConfig:
    id: str = field(
        default="benanga-01",
        metadata=_rule(
            lambda v: (
                None
                if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v)
                else _("must be 1-64 letters, digits, '.', '_' or '-'")
            )
        ),
    )
    name: str = "Bendungan Benanga"


@dataclass(frozen=True)
class SimulatedSensorConfig:
    scenario: str = field(default="flash-flood", metadata=_rule(one_of(*SCENARIOS)))
    # Scenario seconds per real second.
    time_scale: float = field(default=1.0, metadata=_rule(between(0.001, 10000)))
    seed: int = field(default=1, metadata=_rule(between(0, 2**31 - 1)))
    spike_probability: float = field(
        default=0.01, metadata=_rule(between(0, 1, N_("a probability")))
    )
    no_echo_probability: float = field(
        default=0.02, metadata=_rule(between(0, 1, N_("a probability")))
    )
    noise_m: float = field(default=0.005, metadata=_rule(between(0, 1, N_("metres"))))
    repeat: bool = True  # start the scenario again when it ends
    # Where the simulated sensor really hangs, in the site's datum: the world a calibration is
    # made against. -1: at calibration.sensor_elevation_m (a gauge already calibrated).
    mount_elevation_m: float = field(
        default=-1.0,
        metadata=_rule(
            lambda v: (
                None
                if v == -1 or 0 <= v <= 9000
                else _("must be -1 (as calibrated) or 0 .. 9000 m")
            )
        ),
    )


@dataclass(frozen=True)
class HcSr04Config:
    trigger_pin: int = field(default=5, metadata=_rule(bcm_pin))
    echo_pin: int = field(default=6, metadata=_rule(bcm_pin))  # through a 5 V -> 3.3 V divider
    timeout_s: float = field(default=0.1, metadata=_rule(between(0.05, 1.0, N_("seconds"))))
    # The datasheet's minimum between pings: 60 ms.
    read_gap_s: float = field(default=0.06, metadata=_rule(between(0.06, 10, N_("seconds"))))


@dataclass(frozen=True)
class TemperatureConfig:
    source: str = field(default="fixed", metadata=_rule(one_of("fixed", "ds18b20")))
    fixed_c: float = field(default=30.0, metadata=_rule(between(-40, 85, N_("a temperature in C"))))
    device: str = ""  # a DS18B20 sysfs directory; empty = the first /sys/bus/w1/devices/28-*


@dataclass(frozen=True)
class SerialUltrasonicConfig:
    port: str = "/dev/ttyUSB0"
    baudrate: int = field(default=9600, metadata=_rule(between(300, 921600, N_("bits/s"))))
    unit: str = field(default="mm", metadata=_rule(one_of("mm", "cm")))
    frame_start: str = field(
        default="R",
        metadata=_rule(
            lambda v: (
                None
                if len(v) == 1 and v.isprintable() and not v.isdigit()
                else _("must be one printable character that is not a digit")
            )
        ),
    )
    digits: int = field(default=4, metadata=_rule(between(1, 6)))
    timeout_s: float = field(default=1.0, metadata=_rule(between(0.01, 10, N_("seconds"))))


@dataclass(frozen=True)
class ModbusConfig:
    port: str = "/dev/ttyUSB0"
    baudrate: int = field(default=9600, metadata=_rule(between(300, 921600, N_("bits/s"))))
    parity: str = field(default="N", metadata=_rule(one_of("N", "E", "O")))
    stopbits: int = field(
        default=1, metadata=_rule(lambda v: None if v in (1, 2) else _("must be 1 or 2"))
    )
    slave_id: int = field(default=1, metadata=_rule(between(1, 247, N_("a Modbus address"))))
    register: int = field(default=0, metadata=_rule(between(0, 65535, N_("a register address"))))
    function: int = field(
        default=3,
        metadata=_rule(
            lambda v: None if v in (3, 4) else _("must be 3 (holding) or 4 (input registers)")
        ),
    )
    data_type: str = field(default="int16", metadata=_rule(one_of(*MODBUS_DATA_TYPES)))
    word_order: str = field(default="big", metadata=_rule(one_of("big", "little")))
    scale: float = field(default=0.001, metadata=_rule(magnitude(1e-9, 1e6)))
    unit: str = field(default="m", metadata=_rule(one_of(*PRESSURE_UNITS)))
    density_kg_m3: float = field(
        default=1000.0, metadata=_rule(between(900, 1300, N_("a water density in kg/m3")))
    )
    timeout_s: float = field(default=0.5, metadata=_rule(between(0.01, 10, N_("seconds"))))


@dataclass(frozen=True)
class SensorConfig:
    kind: str = field(default="simulated", metadata=_rule(sensor_kind))
    interval_s: float = field(default=10.0, metadata=_rule(between(0.01, 3600, N_("seconds"))))
    alarm_interval_s: float = field(default=2.0, metadata=_rule(between(0.01, 600, N_("seconds"))))
    burst: int = field(default=5, metadata=_rule(between(1, 50)))
    min_range_m: float = field(default=0.25, metadata=_rule(between(0, 100, N_("metres"))))
    max_range_m: float = field(default=4.0, metadata=_rule(between(0.01, 100, N_("metres"))))
    invalid_values: tuple[float, ...] = field(default=(), metadata=_rule(each(magnitude(0, 1e7))))
    fail_to_fault: int = field(default=3, metadata=_rule(between(1, 1000)))
    backoff_max_s: float = field(default=60.0, metadata=_rule(between(0, 3600, N_("seconds"))))
    power_relay_pin: int = field(
        default=-1,
        metadata=_rule(
            lambda v: (
                None if v == -1 or 0 <= v <= 27 else _("must be -1 (none) or a BCM GPIO number")
            )
        ),
    )
    power_relay_active_high: bool = True
    power_cycle_after: int = field(default=10, metadata=_rule(between(1, 10000)))
    power_off_s: float = field(default=2.0, metadata=_rule(between(0.1, 60, N_("seconds"))))
    power_settle_s: float = field(default=2.0, metadata=_rule(between(0, 300, N_("seconds"))))
    simulated: SimulatedSensorConfig = SimulatedSensorConfig()
    hcsr04: HcSr04Config = HcSr04Config()
    temperature: TemperatureConfig = TemperatureConfig()
    serial: SerialUltrasonicConfig = SerialUltrasonicConfig()
    modbus: ModbusConfig = ModbusConfig()


@dataclass(frozen=True)
class CalibrationConfig:
    # Levels are in the site's datum: metres above a local zero or above sea level.
    sensor_elevation_m: float = field(default=10.40, metadata=_rule(ELEVATION))
    offset_m: float = field(default=0.0, metadata=_rule(ELEVATION))
    scale: float = field(default=1.0, metadata=_rule(between(0.01, 100)))


@dataclass(frozen=True)
class FilterConfig:
    window: int = field(default=5, metadata=_rule(between(1, 1000, N_("samples"))))
    # The Benanga reservoir's physical limit (config.toml says how it was chosen).
    max_rate_m_per_min: float = field(
        default=0.025, metadata=_rule(between(0.0001, 1000, N_("m/min")))
    )
    noise_m: float = field(default=0.05, metadata=_rule(between(0, 10, N_("metres"))))
    acquire_samples: int = field(default=3, metadata=_rule(between(1, 100)))
    # Readings that must agree before a jump across a silence is believed (1 = at once).
    confirm_samples: int = field(default=2, metadata=_rule(between(1, 10)))
    reject_to_fault_s: float = field(
        default=300.0, metadata=_rule(between(0, DAY_S, N_("seconds")))
    )
    stuck_after_s: float = field(
        default=21600.0,  # 0 = off
        metadata=_rule(between(0, 30 * DAY_S, N_("seconds"))),
    )
    stuck_tolerance_m: float = field(default=0.0, metadata=_rule(between(0, 1, N_("metres"))))


@dataclass(frozen=True)
class LevelConfig:
    name: str = field(default="", metadata=_rule(level_name))
    above_m: float = field(default=0.0, metadata=_rule(ELEVATION))
    # What the outputs do at this level. Empty = the default for its position (see below).
    siren: str = ""
    lamp: str = field(default="", metadata=_rule(one_of("", *LAMPS)))


@dataclass(frozen=True)
class RateConfig:
    enabled: bool = True
    rise_m_per_h: float = field(default=0.05, metadata=_rule(between(0.001, 100, N_("m/h"))))
    clear_m_per_h: float = field(
        default=-1.0,
        metadata=_rule(  # -1 = half of rise_m_per_h
            lambda v: (
                None
                if v == -1 or 0 <= v <= 100
                else _("must be from 0 to 100 m/h, or -1 (half of rise_m_per_h)")
            )
        ),
    )
    window_s: float = field(default=1800.0, metadata=_rule(between(1, DAY_S, N_("seconds"))))
    raises: str = "waspada"

    @property
    def effective_clear_m_per_h(self) -> float:
        return self.clear_m_per_h if self.clear_m_per_h >= 0 else self.rise_m_per_h / 2


DEFAULT_LEVELS = (
    LevelConfig(name="waspada", above_m=7.50),
    LevelConfig(name="siaga", above_m=7.90),
    LevelConfig(name="awas", above_m=8.50),
)


@dataclass(frozen=True)
class AlarmConfig:
    deadband_m: float = field(default=0.05, metadata=_rule(between(0, 10, N_("metres"))))
    on_delay_s: float = field(default=0.0, metadata=_rule(between(0, 3600, N_("seconds"))))
    off_delay_s: float = field(default=900.0, metadata=_rule(between(0, DAY_S, N_("seconds"))))
    stale_after_s: float = field(
        default=120.0, metadata=_rule(between(1, 7 * DAY_S, N_("seconds")))
    )
    restore_within_s: float = field(
        default=600.0,  # 0 = never
        metadata=_rule(between(0, DAY_S, N_("seconds"))),
    )
    levels: tuple[LevelConfig, ...] = DEFAULT_LEVELS
    rate: RateConfig = RateConfig()


@dataclass(frozen=True)
class SirenPattern:
    name: str = ""
    on_s: float = field(default=1.0, metadata=_rule(between(0.1, 3600, N_("seconds"))))
    off_s: float = field(
        default=0.0, metadata=_rule(between(0, 3600, N_("seconds")))
    )  # 0 = continuous


DEFAULT_SIREN_PATTERNS = (
    SirenPattern(name="intermittent", on_s=5.0, off_s=25.0),
    SirenPattern(name="continuous", on_s=1.0, off_s=0.0),
)


@dataclass(frozen=True)
class OutputsConfig:
    siren_pin: int = field(default=17, metadata=_rule(bcm_pin))
    siren_active_high: bool = True
    green_led_pin: int = field(default=22, metadata=_rule(bcm_pin))
    amber_led_pin: int = field(default=23, metadata=_rule(bcm_pin))
    red_led_pin: int = field(default=24, metadata=_rule(bcm_pin))
    silence_button_pin: int = field(default=27, metadata=_rule(bcm_pin))
    silence_s: float = field(default=600.0, metadata=_rule(between(0, 7200, N_("seconds"))))
    siren_max_on_s: float = field(default=300.0, metadata=_rule(between(1, 3600, N_("seconds"))))
    siren_rest_s: float = field(default=30.0, metadata=_rule(between(0, 600, N_("seconds"))))
    heartbeat_s: float = field(default=5.0, metadata=_rule(between(0.5, 3600, N_("seconds"))))
    siren_patterns: tuple[SirenPattern, ...] = DEFAULT_SIREN_PATTERNS


@dataclass(frozen=True)
class UplinkConfig:
    url: str = field(
        default="",
        metadata=_rule(
            lambda v: (
                None
                if v == "" or re.fullmatch(r"[a-z][a-z0-9+.-]*://[^\s]+", v)
                else _("must be empty (store only) or a URL such as https://host/path")
            )
        ),
    )
    format: str = field(default="native", metadata=_rule(uplink_format))
    token_file: str = ""  # empty: $CREDENTIALS_DIRECTORY/token (systemd LoadCredential)
    influx_db: str = "gauge"
    batch_max: int = field(default=500, metadata=_rule(between(1, 10000)))
    # In Normal, readings wait up to this long to go as one batch (0 = each at once); alarm
    # events, and every reading while a warning is up, go at once.
    batch_s: float = field(default=60.0, metadata=_rule(between(0, 3600, N_("seconds"))))
    connect_timeout_s: float = field(default=5.0, metadata=_rule(between(0.1, 300, N_("seconds"))))
    read_timeout_s: float = field(default=20.0, metadata=_rule(between(0.1, 600, N_("seconds"))))
    # The whole request, however the server trickles: then it is cut and retried.
    request_deadline_s: float = field(
        default=60.0, metadata=_rule(between(0.1, 3600, N_("seconds")))
    )
    # http:// to anything but this machine sends the token in clear text: refused unless set.
    allow_insecure_http: bool = False
    backoff_max_s: float = field(default=300.0, metadata=_rule(between(0.1, DAY_S, N_("seconds"))))
    retry_after_max_s: float = field(
        default=3600.0, metadata=_rule(between(1, DAY_S, N_("seconds")))
    )
    auth_pause_s: float = field(default=60.0, metadata=_rule(between(0.1, DAY_S, N_("seconds"))))
    heartbeat_s: float = field(default=300.0, metadata=_rule(between(0.5, DAY_S, N_("seconds"))))
    verify_tls: bool = True
    ca_bundle: str = ""  # empty: the system's certificate store
    max_backlog_mb: float = field(default=200.0, metadata=_rule(between(0.1, 32768, N_("MB"))))
    dead_letter_max: int = field(default=10000, metadata=_rule(between(1, 1_000_000)))


@dataclass(frozen=True)
class StorageConfig:
    state_dir: str = "/var/lib/gauge-agent"
    runtime_dir: str = "/run/gauge-agent"  # tmpfs: the status file is rewritten every sample


@dataclass(frozen=True)
class Config:
    station: StationConfig = StationConfig()
    sensor: SensorConfig = SensorConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    filter: FilterConfig = FilterConfig()
    alarm: AlarmConfig = AlarmConfig()
    outputs: OutputsConfig = OutputsConfig()
    uplink: UplinkConfig = UplinkConfig()
    storage: StorageConfig = StorageConfig()

    # -- derived views used by the engine and the outputs ---------------------------------
    def level_names(self) -> list[str]:
        return [level.name for level in self.alarm.levels]

    def siren_pattern_for(self, index: int) -> str:
        """Siren pattern name for warning index (0 = normal, i = alarm.levels[i-1])."""
        if index == 0:
            return "off"
        level = self.alarm.levels[index - 1]
        if level.siren:
            return level.siren
        return _default_outputs(index, len(self.alarm.levels))[0]

    def lamp_for(self, index: int) -> str:
        if index == 0:
            return "off"
        level = self.alarm.levels[index - 1]
        return level.lamp or _default_outputs(index, len(self.alarm.levels))[1]

    def pattern(self, name: str) -> SirenPattern | None:
        return next((p for p in self.outputs.siren_patterns if p.name == name), None)


def _default_outputs(index: int, count: int) -> tuple[str, str]:
    """Indonesian practice: lamps at the lower levels, the siren at danger.

    The highest level sounds continuously with a blinking red lamp, the one below it (when there
    are three or more) sounds intermittently with a steady red lamp, the rest light amber only.
    """
    if index == count:
        return "continuous", "red-blink"
    if index == count - 1 and count >= 3:
        return "intermittent", "red"
    return "off", "amber"


# Arrays of tables whose entries are keyed by a name in the file ([outputs.siren_patterns.wail]).
NAMED_TABLES = {SirenPattern}
