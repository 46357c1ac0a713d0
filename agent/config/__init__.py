"""Configuration: TOML in, frozen dataclasses out, every problem reported at once.

- `schema`: the dataclasses (their defaults are the embedded configuration) and the rule for
  each value;
- `load`: reading a file, calibration.toml and --set overrides into a Config, with every
  problem named by its key path (a misspelt threshold silently ignored is how a gauge ends up
  warning at the wrong level);
- `show`: the effective configuration as TOML (check-config).

Import from here: `from agent.config import Config, load_config`.
"""

from agent.config.load import (
    build_config,
    is_loopback_host,
    load_config,
    longest_sample_s,
    watchdog_s,
)
from agent.config.schema import (
    CALIBRATION_FILE_NAME,
    DAY_S,
    DEFAULT_CONFIG_PATH,
    DEFAULT_LEVELS,
    DEFAULT_SIREN_PATTERNS,
    ELEVATION,
    LAMPS,
    MODBUS_DATA_TYPES,
    NAMED_TABLES,
    PRESSURE_UNITS,
    SCENARIOS,
    UNIT_WATCHDOG_S,
    AlarmConfig,
    CalibrationConfig,
    Config,
    FilterConfig,
    HcSr04Config,
    LevelConfig,
    ModbusConfig,
    OutputsConfig,
    RateConfig,
    SensorConfig,
    SerialUltrasonicConfig,
    SimulatedSensorConfig,
    SirenPattern,
    StationConfig,
    StorageConfig,
    TemperatureConfig,
    UplinkConfig,
    between,
    each,
    level_name,
    magnitude,
    one_of,
    sensor_kind,
    uplink_format,
)
from agent.config.show import to_toml

__all__ = [
    "AlarmConfig",
    "CALIBRATION_FILE_NAME",
    "CalibrationConfig",
    "Config",
    "DAY_S",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_LEVELS",
    "DEFAULT_SIREN_PATTERNS",
    "ELEVATION",
    "FilterConfig",
    "HcSr04Config",
    "LAMPS",
    "LevelConfig",
    "MODBUS_DATA_TYPES",
    "ModbusConfig",
    "NAMED_TABLES",
    "OutputsConfig",
    "PRESSURE_UNITS",
    "RateConfig",
    "SCENARIOS",
    "SensorConfig",
    "SerialUltrasonicConfig",
    "SimulatedSensorConfig",
    "SirenPattern",
    "StationConfig",
    "StorageConfig",
    "TemperatureConfig",
    "UNIT_WATCHDOG_S",
    "UplinkConfig",
    "between",
    "build_config",
    "each",
    "is_loopback_host",
    "level_name",
    "load_config",
    "longest_sample_s",
    "magnitude",
    "one_of",
    "sensor_kind",
    "to_toml",
    "uplink_format",
    "watchdog_s",
]
