"""Reading a configuration: TOML (and calibration.toml, and --set overrides) in, a Config out,
every problem reported at once with its key path, or a ConfigError."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import tomllib
import typing
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config.schema import (
    CALIBRATION_FILE_NAME,
    NAMED_TABLES,
    UNIT_WATCHDOG_S,
    Config,
    SensorConfig,
    UplinkConfig,
)
from agent.errors import ConfigError, UnreadableFile
from agent.files import is_regular_file, read_small_file
from agent.i18n import _


def load_config(
    path: str | os.PathLike | None = None,
    overrides: typing.Sequence[str] = (),
    *,
    use_calibration_file: bool = True,
) -> Config:
    """Read `path` (None = embedded defaults), merge calibration.toml and `--set` overrides.

    Raises ConfigError listing every problem found, one line each: syntax, each key, the rules
    between keys, in one pass (a technician fixes them all at once, not one per run).
    """
    data: dict = {}
    problems: list[str] = []
    if path is not None:
        path = Path(path)
        data = _read_toml(path, problems)
        calibration_path = path.parent / CALIBRATION_FILE_NAME
        if use_calibration_file and calibration_path.exists():
            _merge_calibration(
                data, _read_toml(calibration_path, problems), calibration_path, problems
            )
    for override in overrides:
        _apply_override(data, override, problems)
    try:
        config = build_config(data)
    except ConfigError as error:
        raise ConfigError(problems + error.problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _merge_calibration(data: dict, calibration: dict, path: Path, problems: list[str]) -> None:
    for key in sorted(set(calibration) - {"calibration"}):
        problems.append(
            f"{path}: "
            + _("[{table}] does not belong in a calibration file (only [calibration])").format(
                table=key
            )
        )
    section = calibration.get("calibration")
    if section is None:
        return
    if not isinstance(section, dict):
        problems.append(
            f"{path}: "
            + _("calibration must be a table ([calibration]), not {value}").format(
                value=_show(section)
            )
        )
        return
    merged = data.get("calibration")
    data["calibration"] = {**(merged if isinstance(merged, dict) else {}), **section}


def build_config(data: dict) -> Config:
    problems: list[str] = []
    config = _build(Config, data, "", problems)
    # The rules between keys run even when some keys are wrong, leaving out only the rules
    # that involve a wrong key (their value was replaced by the default and would mislead).
    _check_relations(config, Relations(problems))
    if problems:
        raise ConfigError(problems)
    return config


# A syntax error is reported and its line left out, and the rest of the file is still read, up
# to this many times: the schema problems in the rest of the file are reported in the same run.
MAX_SYNTAX_PROBLEMS = 20
_ERROR_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def _read_toml(path: Path, problems: list[str]) -> dict:
    try:
        raw = read_small_file(path)
    except UnreadableFile as error:
        hint = (
            " " + _("(pass --config PATH, or create it from the config.toml template)")
            if error.missing
            else ""
        )
        problems.append(f"{error}{hint}")
        return {}
    try:
        # utf-8-sig: Windows Notepad starts files with a byte-order mark; it means nothing here.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        problems.append(
            f"{path}: "
            + _("line {line}: not UTF-8 text (save the file as UTF-8)").format(line=line)
        )
        return {}
    return _parse_toml(text, str(path), problems)


def _parse_toml(text: str, where: str, problems: list[str]) -> dict:
    lines = text.split("\n")
    for _attempt in range(MAX_SYNTAX_PROBLEMS):
        try:
            return tomllib.loads("\n".join(lines))
        except tomllib.TOMLDecodeError as error:
            bad_line, message = _locate_syntax_error(lines, str(error))
            problems.append(f"{where}: {message}")
            if bad_line is None:
                return {}
            lines[bad_line] = ""  # left out; the rest is still checked
    problems.append(
        f"{where}: "
        + _("more than {count} syntax errors; stopped reading").format(count=MAX_SYNTAX_PROBLEMS)
    )
    return {}


def _locate_syntax_error(lines: list[str], message: str) -> tuple[int | None, str]:
    """The index of the line to leave out, and the problem in words that name the key."""
    if message.startswith("Cannot overwrite a value"):
        # tomllib gives no line for a key given twice: find it, by key.
        duplicate = _find_duplicate_key(lines)
        if duplicate is not None:
            index, first, key = duplicate
            return index, _(
                "line {line}: {key} is given twice (also on line {first}); keep one"
            ).format(line=index + 1, key=key, first=first + 1)
    position = _ERROR_POSITION.search(message)
    # tomllib's own words (English) are kept inside ours: they name the exact fault.
    if position is None:
        return None, _("not valid TOML: {reason}").format(reason=message)
    index = int(position.group(1)) - 1
    if not 0 <= index < len(lines):
        return None, _("not valid TOML: {reason}").format(reason=message)
    what = _ERROR_POSITION.sub("", message).strip()
    shown = lines[index].strip()
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return index, _("line {line}: not valid TOML ({reason}): {text}").format(
        line=index + 1, reason=what, text=repr(shown)
    )


_TABLE_HEADER = re.compile(r"\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_LINE = re.compile(r"\s*([A-Za-z0-9_.\-\s\"']+?)\s*=")


def _find_duplicate_key(lines: list[str]) -> tuple[int, int, str] | None:
    """(line index, first line index, dotted key) of the first key given twice in a table."""
    seen: dict[str, int] = {}
    table, arrays = "", dict[str, int]()
    for index, line in enumerate(lines):
        header = _TABLE_HEADER.match(line)
        if header:
            table = header.group(2).replace(" ", "")
            if header.group(1) == "[[":
                # Every [[item]] is a table of its own: alarm.levels[0], alarm.levels[1], ...
                arrays[table] = arrays.get(table, -1) + 1
                table = f"{table}[{arrays[table]}]"
            continue
        key_line = _KEY_LINE.match(line)
        if not key_line:
            continue
        key = ".".join(part.strip().strip("\"'") for part in key_line.group(1).split("."))
        full = f"{table}.{key}" if table else key
        if full in seen:
            return index, seen[full], full
        seen[full] = index
    return None


_KEY_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)(?:\[(\d+)\])?")


def _apply_override(data: dict, override: str, problems: list[str]) -> None:
    """Apply one `--set KEY=VALUE` (VALUE in TOML syntax, KEY like alarm.levels[1].above_m)."""
    key, sep, raw_value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        problems.append(
            f"--set {override!r}: " + _("must look like KEY=VALUE, e.g. alarm.on_delay_s=30")
        )
        return
    try:
        value = tomllib.loads(f"v = {raw_value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        problems.append(
            f"--set {key}: "
            + _(
                '{value} is not a TOML value (quote strings: name="x"; numbers and [lists] as is)'
            ).format(value=repr(raw_value.strip()))
        )
        return
    parts = key.split(".")
    target: Any = data
    for position, part in enumerate(parts):
        match = _KEY_PART.fullmatch(part)
        if not match:
            problems.append(
                f"--set {key}: " + _("{part} is not a key name").format(part=repr(part))
            )
            return
        name, index = match.group(1), match.group(2)
        last = position == len(parts) - 1
        if not isinstance(target, dict):
            problems.append(
                f"--set {key}: " + _("{key} is not a table").format(key=".".join(parts[:position]))
            )
            return
        if index is None:
            if last:
                target[name] = value
            else:
                target = target.setdefault(name, {})
            continue
        if name not in target:
            target[name] = _default_list_as_toml(parts[:position] + [name])
        items = target[name]
        if not isinstance(items, list) or int(index) >= len(items):
            problems.append(
                f"--set {key}: "
                + _("{key} has no item [{index}]").format(
                    key=".".join(parts[:position] + [name]), index=index
                )
            )
            return
        if last:
            items[int(index)] = value
        else:
            target = items[int(index)]


def _default_list_as_toml(path: list[str]) -> list:
    """The embedded default for a list of tables, as plain data, so `--set x[1].y=` can edit it."""
    node: Any = Config()
    for part in path:
        node = getattr(node, part)
    return [_as_plain(item) for item in node]


def _as_plain(node: Any) -> Any:
    if dataclasses.is_dataclass(node):
        return {f.name: _as_plain(getattr(node, f.name)) for f in dataclasses.fields(node)}
    if isinstance(node, tuple):
        return [_as_plain(item) for item in node]
    return node


# Types whose TOML form is a table keyed by name rather than a list.


def _build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(
            f"{path or _('configuration')}: "
            + _("{value} must be a table").format(value=_show(data))
        )
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            problems.append(_unknown_key(path, key, list(fields)))
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            continue
        key_path = f"{path}.{name}" if path else name
        value = _convert(data[name], hints[name], key_path, problems, spec.default)
        if value is _INVALID:
            continue
        check = spec.metadata.get("check")
        if check is not None:
            complaint = check(value)
            if complaint:
                problems.append(f"{key_path}: {_show(data[name])} {complaint}")
                continue
        values[name] = value
    return cls(**values)


_INVALID = object()


def _convert(value: Any, hint: Any, path: str, problems: list[str], default: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        problems.append(f"{path}: " + _("{value} must be true or false").format(value=_show(value)))
        return _INVALID
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)  # an integer past 1.8e308 does not fit a float
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                problems.append(
                    f"{path}: " + _("{value} must be a finite number").format(value=_show(value))
                )
                return _INVALID
            return number
        problems.append(f"{path}: " + _("{value} must be a number").format(value=_show(value)))
        return _INVALID
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        problems.append(
            f"{path}: " + _("{value} must be a whole number").format(value=_show(value))
        )
        return _INVALID
    if hint is str:
        if not isinstance(value, str):
            problems.append(
                f"{path}: " + _("{value} must be a string (in quotes)").format(value=_show(value))
            )
            return _INVALID
        if any(not character.isprintable() for character in value):
            # A NUL in a path crashes `run`; a newline in a name breaks the log and upstream.
            problems.append(
                f"{path}: "
                + _("{value} must not contain control characters").format(value=_show(value))
            )
            return _INVALID
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, path, problems)
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if item_hint in NAMED_TABLES:
            if not isinstance(value, dict):
                problems.append(
                    f"{path}: "
                    + _("{value} must be a table of named entries, e.g. [{key}.NAME]").format(
                        value=_show(value), key=path
                    )
                )
                return _INVALID
            for name, entry in value.items():
                if isinstance(entry, dict) and "name" in entry:
                    problems.append(
                        f"{path}.{name}.name: "
                        + _(
                            "the entry's name is its table's name ({name}); remove this key"
                        ).format(name=repr(name))
                    )
            return tuple(
                _build(
                    item_hint,
                    {**entry, "name": name} if isinstance(entry, dict) else entry,
                    f"{path}.{name}",
                    problems,
                )
                for name, entry in value.items()
            )
        if not isinstance(value, list):
            problems.append(f"{path}: " + _("{value} must be a list").format(value=_show(value)))
            return _INVALID
        items = [
            _convert(item, item_hint, f"{path}[{i}]", problems, None)
            for i, item in enumerate(value)
        ]
        return _INVALID if any(item is _INVALID for item in items) else tuple(items)
    raise TypeError(f"config schema has an unsupported type at {path}: {hint!r}")


def _unknown_key(path: str, key: str, known: list[str]) -> str:
    where = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = (
        _("did you mean {key}?").format(key=repr(close[0]))
        if close
        else _("known keys here: {keys}").format(keys=", ".join(known))
    )
    return f"{where}: " + _("unknown key ({hint})").format(hint=hint)


def _show(value: Any) -> str:
    """A value as the message shows it: short, quoted if text, never the whole of a long one."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    if isinstance(value, bool):
        return "true" if value else "false"  # TOML's words: not translated
    if isinstance(value, dict):
        return _("a table")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, int) and abs(value) >= 10**15:
        if abs(value) >= 10**4000:  # str() refuses to convert an int this long
            return _("a huge number")
        return _("a {count}-digit number").format(count=len(str(abs(value))))
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Relations:
    """Where the rules between keys report. A rule that involves a key already reported as
    wrong is left out: that key holds its default now, and the complaint would mislead."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        self.wrong = {problem.split(":", 1)[0] for problem in problems}

    def report(self, keys: typing.Sequence[str], where: str, text: str) -> None:
        """`text` about the key `where`, unless one of `keys` is already wrong."""
        for key in keys:
            if any(
                key == wrong
                or key.startswith(wrong + ".")
                or key.startswith(wrong + "[")
                or wrong.startswith(key + ".")
                or wrong.startswith(key + "[")
                for wrong in self.wrong
            ):
                return
        self.problems.append(f"{where}: {text}")


def _check_relations(config: Config, relations: Relations) -> None:
    """Rules that span several keys."""
    report = relations.report
    sensor, alarm, outputs = config.sensor, config.alarm, config.outputs
    if sensor.max_range_m <= sensor.min_range_m:
        report(
            ["sensor.max_range_m", "sensor.min_range_m"],
            "sensor.max_range_m",
            _("{value} must be above {other} ({limit})").format(
                value=sensor.max_range_m, other="sensor.min_range_m", limit=sensor.min_range_m
            ),
        )
    if sensor.alarm_interval_s > sensor.interval_s:
        report(
            ["sensor.alarm_interval_s", "sensor.interval_s"],
            "sensor.alarm_interval_s",
            _(
                "{value} must not be longer than sensor.interval_s ({limit}):"
                " sample faster in alarm, not slower"
            ).format(value=sensor.alarm_interval_s, limit=sensor.interval_s),
        )
    levels = alarm.levels
    if not 1 <= len(levels) <= 6:
        report(
            ["alarm.levels"],
            "alarm.levels",
            _("{count} levels given; 1 to 6 are allowed").format(count=len(levels)),
        )
    seen: dict[str, int] = {}
    pattern_names = [p.name for p in outputs.siren_patterns]
    for i, level in enumerate(levels):
        key = f"alarm.levels[{i}]"
        if not level.name:
            report([f"{key}.name"], f"{key}.name", _("missing; every level needs a name"))
        elif level.name in seen:
            report(
                [f"{key}.name"],
                f"{key}.name",
                _("{name} is already the name of {other}").format(
                    name=repr(level.name), other=f"alarm.levels[{seen[level.name]}]"
                ),
            )
        seen.setdefault(level.name, i)
        if i > 0 and level.above_m <= levels[i - 1].above_m:
            report(
                [f"{key}.above_m", f"alarm.levels[{i - 1}].above_m"],
                f"{key}.above_m",
                _("{value} must be above {other} ({limit})").format(
                    value=level.above_m,
                    other=f"alarm.levels[{i - 1}].above_m",
                    limit=levels[i - 1].above_m,
                ),
            )
        if level.siren and level.siren != "off" and level.siren not in pattern_names:
            report(
                [f"{key}.siren", "outputs.siren_patterns"],
                f"{key}.siren",
                _(
                    "{value} must be 'off' or a pattern from outputs.siren_patterns ({names})"
                ).format(value=repr(level.siren), names=", ".join(pattern_names)),
            )
    for i in range(1, len(levels)):
        gap = levels[i].above_m - levels[i - 1].above_m
        if 0 < gap <= alarm.deadband_m:
            report(
                [
                    "alarm.deadband_m",
                    f"alarm.levels[{i}].above_m",
                    f"alarm.levels[{i - 1}].above_m",
                ],
                "alarm.deadband_m",
                _(
                    "{value} must be smaller than the gap between {lower} and {upper} ({gap})"
                ).format(
                    value=alarm.deadband_m,
                    lower=f"alarm.levels[{i - 1}]",
                    upper=f"alarm.levels[{i}]",
                    gap=f"{gap:.3f}",
                ),
            )
    rate = alarm.rate
    if rate.enabled:
        if rate.raises not in seen:
            report(
                ["alarm.rate.raises", "alarm.levels"],
                "alarm.rate.raises",
                _("{value} must be one of the level names ({names})").format(
                    value=repr(rate.raises), names=", ".join(level.name for level in levels)
                ),
            )
        if rate.effective_clear_m_per_h >= rate.rise_m_per_h:
            report(
                ["alarm.rate.clear_m_per_h", "alarm.rate.rise_m_per_h"],
                "alarm.rate.clear_m_per_h",
                _("{value} must be below {other} ({limit})").format(
                    value=rate.clear_m_per_h,
                    other="alarm.rate.rise_m_per_h",
                    limit=rate.rise_m_per_h,
                ),
            )
    for pattern in outputs.siren_patterns:
        if pattern.name == "off" or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", pattern.name):
            report(
                [f"outputs.siren_patterns.{pattern.name}"],
                f"outputs.siren_patterns.{pattern.name}",
                _("the name must be lower-case letters, digits, '-' or '_', and not 'off'"),
            )
    pins = {
        "outputs.siren_pin": outputs.siren_pin,
        "outputs.green_led_pin": outputs.green_led_pin,
        "outputs.amber_led_pin": outputs.amber_led_pin,
        "outputs.red_led_pin": outputs.red_led_pin,
        "outputs.silence_button_pin": outputs.silence_button_pin,
    }
    if sensor.kind == "hcsr04":
        pins["sensor.hcsr04.trigger_pin"] = sensor.hcsr04.trigger_pin
        pins["sensor.hcsr04.echo_pin"] = sensor.hcsr04.echo_pin
    if sensor.power_relay_pin >= 0:
        pins["sensor.power_relay_pin"] = sensor.power_relay_pin
    by_pin: dict[int, str] = {}
    for key, pin in pins.items():
        if pin in by_pin:
            report(
                [key, by_pin[pin], "sensor.kind"],
                key,
                _("{pin} is already used by {other}").format(pin=pin, other=by_pin[pin]),
            )
        by_pin.setdefault(pin, key)
    _check_watchdog(sensor, report)
    _check_uplink(config.uplink, report)
    _check_paths(config, report)
    if config.sensor.kind != "modbus-pressure" and config.calibration.sensor_elevation_m <= 0:
        report(
            ["calibration.sensor_elevation_m", "sensor.kind"],
            "calibration.sensor_elevation_m",
            _(
                "{value} must be above 0 for a distance sensor (the level of the sensor face)"
            ).format(value=config.calibration.sensor_elevation_m),
        )


def _check_uplink(uplink: UplinkConfig, report: Callable) -> None:
    if not uplink.url:
        return
    url = repr(uplink.url)
    try:
        parts = urllib.parse.urlsplit(uplink.url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        report(
            ["uplink.url"],
            "uplink.url",
            _("{url} is not a usable URL ({reason})").format(url=url, reason=error),
        )
        return
    if not host:
        report(["uplink.url"], "uplink.url", _("{url} has no host").format(url=url))
        return
    from agent.transports import transports  # they import this module: not at the top

    transport = transports().get(uplink.format)
    schemes = getattr(transport, "SCHEMES", ())
    if transport is not None and parts.scheme not in schemes:
        report(
            ["uplink.url", "uplink.format"],
            "uplink.url",
            _("{url} must be a URL starting with {schemes} for uplink.format = {format}").format(
                url=url,
                schemes=" / ".join(f"{scheme}://" for scheme in schemes),
                format=repr(uplink.format),
            ),
        )
        return
    loopback = is_loopback_host(host)
    if parts.scheme == "http" and not loopback and not uplink.allow_insecure_http:
        report(
            ["uplink.url", "uplink.allow_insecure_http"],
            "uplink.url",
            _(
                "{url} would send the token and the readings unencrypted; use https://,"
                " or set uplink.allow_insecure_http = true on a network you trust"
            ).format(url=url),
        )
    if uplink.request_deadline_s < uplink.connect_timeout_s:
        report(
            ["uplink.request_deadline_s", "uplink.connect_timeout_s"],
            "uplink.request_deadline_s",
            _("{value} must be at least {other} ({limit})").format(
                value=uplink.request_deadline_s,
                other="uplink.connect_timeout_s",
                limit=uplink.connect_timeout_s,
            ),
        )


def _check_paths(config: Config, report: Callable) -> None:
    """What `run` opens: a path that cannot work is a problem now, not a restart loop later."""
    for key, value in (
        ("storage.state_dir", config.storage.state_dir),
        ("storage.runtime_dir", config.storage.runtime_dir),
    ):
        if not os.path.isabs(value):
            report(
                [key],
                key,
                _(
                    "{path} must be an absolute path (the service's working directory is not yours)"
                ).format(path=repr(value)),
            )
    for key, value in (
        ("uplink.token_file", config.uplink.token_file),
        ("uplink.ca_bundle", config.uplink.ca_bundle),
    ):
        if not value:
            continue
        if not os.path.isabs(value):
            report([key], key, _("{path} must be an absolute path").format(path=repr(value)))
        elif key == "uplink.ca_bundle" and not is_regular_file(value):
            report(
                [key],
                key,
                _(
                    "{path} is not a file (the CA certificates in PEM, or empty for the"
                    " system's store)"
                ).format(path=repr(value)),
            )
        elif os.path.exists(value) and not is_regular_file(value):
            report([key], key, _("{path} is not a regular file").format(path=repr(value)))


def is_loopback_host(host: str) -> bool:
    """This machine: nothing sent there crosses a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DRIVER_SECTION = {"hcsr04": "hcsr04", "serial-ultrasonic": "serial", "modbus-pressure": "modbus"}


def longest_sample_s(sensor: SensorConfig) -> float:
    """The longest one sample can keep the sampling loop in the driver: every read of the
    burst timing out (a power cycle runs on a thread of its own)."""
    per_read = {
        "hcsr04": sensor.hcsr04.timeout_s + sensor.hcsr04.read_gap_s,
        "serial-ultrasonic": sensor.serial.timeout_s,
        "modbus-pressure": sensor.modbus.timeout_s,
    }.get(sensor.kind, 0.0)
    return sensor.burst * per_read


def watchdog_s() -> float:
    usec = os.environ.get("WATCHDOG_USEC", "")
    return int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else UNIT_WATCHDOG_S


def _check_watchdog(sensor: SensorConfig, report: Callable) -> None:
    """The loop pings systemd's watchdog every WatchdogSec/2 between samples; a sample that can
    take longer than that would get a healthy daemon killed."""
    longest, limit = longest_sample_s(sensor), watchdog_s() / 2
    if longest >= limit:
        report(
            ["sensor.burst", "sensor.kind", f"sensor.{_DRIVER_SECTION.get(sensor.kind, '')}"],
            "sensor.burst",
            _(
                "{count} reads that all time out keep one sample {longest} s in the driver;"
                " it must stay under {limit} s (half the unit's WatchdogSec={watchdog}):"
                " lower sensor.burst or the sensor's timeout_s"
            ).format(
                count=sensor.burst,
                longest=f"{longest:g}",
                limit=f"{limit:g}",
                watchdog=f"{watchdog_s():g}",
            ),
        )
