"""Configuration: the template loads, every problem is named once with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Config, load_config, to_toml
from agent.errors import ConfigError
from tests.conftest import ROOT, config_from


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from(data)
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_template_is_valid_and_describes_benanga():
    config = load_config(ROOT / "config.toml")
    assert config.station.id == "benanga-01"
    assert [(level.name, level.above_m) for level in config.alarm.levels] == [
        ("waspada", 7.50),
        ("siaga", 7.90),
        ("awas", 8.50),
    ]
    assert config.sensor.kind == "hcsr04"


def test_embedded_default_matches_the_contract_defaults():
    config = Config()
    assert config.sensor.interval_s == 10.0 and config.sensor.alarm_interval_s == 2.0
    assert config.filter.window == 5
    # DESIGN.md's example shows a river gauge's 0.5 m/min; the embedded default is the Benanga
    # reservoir's own limit (issue #7), the same value config.toml ships.
    assert config.filter.max_rate_m_per_min == 0.025
    shipped = load_config(ROOT / "config.toml").filter
    assert (shipped.max_rate_m_per_min, shipped.confirm_samples) == (0.025, 2)
    assert config.alarm.off_delay_s == 900.0 and config.alarm.stale_after_s == 120.0
    assert config.siren_pattern_for(1) == "off" and config.lamp_for(1) == "amber"
    assert config.siren_pattern_for(2) == "intermittent" and config.lamp_for(2) == "red"
    assert config.siren_pattern_for(3) == "continuous" and config.lamp_for(3) == "red-blink"


def test_levels_out_of_order_name_both_keys_and_values():
    found = problems_of(
        {
            "alarm": {
                "levels": [{"name": "waspada", "above_m": 7.5}, {"name": "siaga", "above_m": 7.2}]
            }
        }
    )
    assert "alarm.levels[1].above_m: 7.2 must be above alarm.levels[0].above_m (7.5)" in found


def test_unknown_key_suggests_the_close_one():
    found = problems_of({"alarm": {"of_delay_s": 60}})
    assert found == ["alarm.of_delay_s: unknown key (did you mean 'off_delay_s'?)"]


def test_unknown_section_lists_known_ones():
    found = problems_of({"telemetry": {}})
    assert len(found) == 1 and found[0].startswith(
        "telemetry: unknown key (known keys here: station"
    )


def test_every_problem_is_reported_at_once():
    found = problems_of(
        {"sensor": {"interval_s": -1, "burst": 0, "kind": "laser"}, "outputs": {"siren_pin": 99}}
    )
    assert found == [
        "sensor.kind: 'laser' must be one of 'hcsr04', 'modbus-pressure', 'serial-ultrasonic',"
        " 'simulated'",
        "sensor.interval_s: -1 must be from 0.01 to 3600 seconds",
        "sensor.burst: 0 must be from 1 to 50",
        "outputs.siren_pin: 99 must be a BCM GPIO number from 0 to 27",
    ]


def test_wrong_types_are_named():
    found = problems_of(
        {
            "alarm": {"on_delay_s": "30", "levels": [{"name": "w", "above_m": True}]},
            "outputs": {"siren_active_high": 1},
        }
    )
    assert "alarm.on_delay_s: '30' must be a number" in found
    assert "alarm.levels[0].above_m: true must be a number" in found
    assert "outputs.siren_active_high: 1 must be true or false" in found


def test_a_zero_threshold_is_a_real_threshold():
    config = config_from(
        {"alarm": {"levels": [{"name": "wet", "above_m": 0.0}], "rate": {"raises": "wet"}}}
    )
    assert config.alarm.levels[0].above_m == 0.0


def test_cross_key_rules():
    found = problems_of(
        {
            "sensor": {"min_range_m": 3.0, "max_range_m": 2.0, "alarm_interval_s": 20.0},
            "alarm": {"rate": {"raises": "bahaya"}},
            "outputs": {"red_led_pin": 17},
        }
    )
    assert "sensor.max_range_m: 2.0 must be above sensor.min_range_m (3.0)" in found
    assert any(p.startswith("sensor.alarm_interval_s: 20.0 must not be longer") for p in found)
    assert (
        "alarm.rate.raises: 'bahaya' must be one of the level names (waspada, siaga, awas)" in found
    )
    assert "outputs.red_led_pin: 17 is already used by outputs.siren_pin" in found


def test_duplicate_level_names_and_too_many_levels():
    levels = [{"name": f"l{i}", "above_m": float(i)} for i in range(7)]
    assert "alarm.levels: 7 levels given; 1 to 6 are allowed" in problems_of(
        {"alarm": {"levels": levels, "rate": {"enabled": False}}}
    )
    found = problems_of(
        {
            "alarm": {
                "levels": [{"name": "a", "above_m": 1.0}, {"name": "a", "above_m": 2.0}],
                "rate": {"raises": "a"},
            }
        }
    )
    assert "alarm.levels[1].name: 'a' is already the name of alarm.levels[0]" in found


def test_siren_pattern_must_exist():
    found = problems_of(
        {"alarm": {"levels": [{"name": "waspada", "above_m": 1.0, "siren": "wail"}]}}
    )
    assert found == [
        "alarm.levels[0].siren: 'wail' must be 'off' or a pattern from"
        " outputs.siren_patterns (intermittent, continuous)"
    ]


def test_custom_siren_patterns_are_tables_by_name(tmp_path):
    path = write(
        tmp_path,
        """
[outputs.siren_patterns.wail]
on_s = 2.0
off_s = 1.0
[[alarm.levels]]
name = "waspada"
above_m = 1.0
siren = "wail"
""",
    )
    config = load_config(path)
    assert config.pattern("wail").on_s == 2.0
    assert config.siren_pattern_for(1) == "wail"


def test_bad_toml_and_missing_file_are_one_line_each(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[alarm\n"))
    assert len(caught.value.problems) == 1 and "not valid TOML" in caught.value.problems[0]
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.problems == [
        f"{tmp_path / 'absent.toml'}: no such file (pass --config"
        " PATH, or create it from the config.toml template)"
    ]


def test_calibration_file_next_to_config_overrides_calibration(tmp_path):
    path = write(tmp_path, "[calibration]\nsensor_elevation_m = 10.40\n")
    write(tmp_path, "[calibration]\nsensor_elevation_m = 10.37\n", "calibration.toml")
    assert load_config(path).calibration.sensor_elevation_m == 10.37
    write(tmp_path, "[alarm]\noff_delay_s = 1\n", "calibration.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{tmp_path / 'calibration.toml'}: [alarm] does not belong"
        " in a calibration file (only [calibration])"
    ]


def test_overrides_use_toml_values_and_list_indexes():
    config = load_config(
        None,
        [
            "alarm.levels[1].above_m=8.0",
            'station.id="test-2"',
            "sensor.invalid_values=[9999, 5000]",
        ],
    )
    assert config.alarm.levels[1].above_m == 8.0
    assert config.alarm.levels[0].above_m == 7.5  # the rest of the default list is kept
    assert config.station.id == "test-2"
    assert config.sensor.invalid_values == (9999.0, 5000.0)


@pytest.mark.parametrize(
    "override, problem",
    [
        (
            "alarm.on_delay_s",
            "--set 'alarm.on_delay_s': must look like KEY=VALUE, e.g. alarm.on_delay_s=30",
        ),
        (
            "station.id=benanga",
            "--set station.id: 'benanga' is not a TOML value (quote strings:"
            ' name="x"; numbers and [lists] as is)',
        ),
        (
            "alarm.levels[5].above_m=1",
            "--set alarm.levels[5].above_m: alarm.levels has no item [5]",
        ),
    ],
)
def test_bad_overrides_are_config_errors(override, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert caught.value.problems == [problem]


def test_printed_effective_configuration_loads_back_identically(tmp_path):
    original = load_config(ROOT / "config.toml")
    printed = write(tmp_path, to_toml(original), "printed.toml")
    assert load_config(printed) == original


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://data.samarindakota.go.id/gauge", True),
        ("http://127.0.0.1:8080/ingest", True),
        ("http://localhost/ingest", True),
        ("http://[::1]:8080/ingest", True),
        ("http://10.1.2.3/ingest", False),
        ("http://data.samarindakota.go.id/gauge", False),
    ],
)
def test_plain_http_to_another_machine_is_refused_unless_allowed(url, allowed):
    """The token would cross the network in clear text."""
    if allowed:
        config_from({"uplink": {"url": url}})
        return
    assert problems_of({"uplink": {"url": url}})[0].startswith(f"uplink.url: {url!r} would send")
    config_from({"uplink": {"url": url, "allow_insecure_http": True}})


@pytest.mark.parametrize("url", ["http://[::1", "https://host:port/x", "https:///path"])
def test_an_uplink_url_run_could_not_use_is_a_problem_not_a_crash_at_start(url):
    assert problems_of({"uplink": {"url": url}})[0].startswith("uplink.url:")


# -- issue #10: every bad input gets a clear answer ------------------------------------------


def test_a_syntax_error_does_not_hide_the_problems_in_the_rest_of_the_file(tmp_path):
    path = write(tmp_path, "[sensor]\ninterval_s = 0\nburst = = 5\n[alarm]\noff_delay_s = -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}: line 3: not valid TOML (Invalid value): 'burst = = 5'",
        "sensor.interval_s: 0 must be from 0.01 to 3600 seconds",
        "alarm.off_delay_s: -1 must be from 0 to 86400 seconds",
    ]


def test_a_bad_set_option_does_not_hide_the_files_problems(tmp_path):
    path = write(tmp_path, "[sensor]\nburst = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["station.id=benanga"])
    assert [problem.split(":")[0] for problem in caught.value.problems] == [
        "--set station.id",
        "sensor.burst",
    ]


def test_a_key_given_twice_is_named_by_its_key_and_lines(tmp_path):
    path = write(
        tmp_path,
        "[sensor]\nburst = 3\n\n[[alarm.levels]]\nname = 'waspada'\n"
        "above_m = 1\n[[alarm.levels]]\nname = 'b'\nabove_m = 2\nabove_m = 3\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}: line 10: alarm.levels[1].above_m is given twice (also on line 9); keep one"
    ]


def test_a_file_saved_with_a_byte_order_mark_reads_as_any_other(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'\xef\xbb\xbf[station]\nid = "bom-1"\n')  # Windows Notepad
    assert load_config(path).station.id == "bom-1"


def test_text_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'[station]\nname = "Bendungan \xe9"\n')  # Latin-1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}: line 2: not UTF-8 text (save the file as UTF-8)"]


@pytest.mark.parametrize(
    "text, problem",
    [
        (
            "[sensor]\ninterval_s = 1" + "0" * 400 + "\n",
            "sensor.interval_s: a 401-digit number must be a finite number",
        ),
        (
            "[uplink]\nauth_pause_s = 1e10\n",
            "uplink.auth_pause_s: 10000000000.0 must be from 0.1 to 86400 seconds",
        ),
        (
            "[outputs]\nsilence_s = 864000\n",
            "outputs.silence_s: 864000 must be from 0 to 7200 seconds",
        ),
        (
            '[storage]\nstate_dir = "/var/lib/g\\u0000x"\n',
            "storage.state_dir: '/var/lib/g\\x00x' must not contain control characters",
        ),
        (
            '[station]\nname = "two\\nlines"\n',
            "station.name: 'two\\nlines' must not contain control characters",
        ),
        (
            '[storage]\nstate_dir = "state"\n',
            "storage.state_dir: 'state' must be an absolute path (the service's working"
            " directory is not yours)",
        ),
        (
            '[uplink]\nca_bundle = "/nonexistent/ca.pem"\n',
            "uplink.ca_bundle: '/nonexistent/ca.pem' is not a file (the CA certificates in PEM, or"
            " empty for the system's store)",
        ),
        (
            '[outputs.siren_patterns.wail]\nname = "howl"\non_s = 2\n',
            "outputs.siren_patterns.wail.name: the entry's name is its table's name ('wail');"
            " remove this key",
        ),
        (
            "[sensor]\ninvalid_values = [9999, 1e30]\n",
            "sensor.invalid_values: a list (item 1: 1e+30) must be from -1e+07 to 1e+07",
        ),
    ],
)
def test_values_run_could_not_use_or_no_gauge_could_mean_are_problems(tmp_path, text, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.problems == [problem]


def test_a_calibration_file_of_the_wrong_shape_is_a_problem_not_a_crash(tmp_path):
    path = write(tmp_path, '[station]\nid = "x"\n')
    write(tmp_path, "calibration = [1, 2]\n", "calibration.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{tmp_path / 'calibration.toml'}: calibration must be a table ([calibration]), not a list"
    ]


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_only_regular_files_are_read_and_at_once(tmp_path, kind):
    import os

    path = {"directory": tmp_path, "device": Path("/dev/zero"), "fifo": tmp_path / "fifo"}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes to it: reading would wait for ever
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.problems[0]
    assert message.startswith(f"{path}: is ")
    assert ("directory" in message) == (kind == "directory")


def schema_ranges(cls=Config, path="") -> dict[str, tuple[float, float]]:
    """Every number's (low, high) from the schema's own rules, by key (list items as [])."""
    import dataclasses
    import typing

    found = {}
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        hint, key = hints[spec.name], f"{path}.{spec.name}" if path else spec.name
        if dataclasses.is_dataclass(hint):
            found.update(schema_ranges(hint, key))
        elif typing.get_origin(hint) is tuple and dataclasses.is_dataclass(
            typing.get_args(hint)[0]
        ):
            found.update(schema_ranges(typing.get_args(hint)[0], key + "[]"))
        check = spec.metadata.get("check")
        if hasattr(check, "range"):
            found[key] = check.range
    return found


def test_config_toml_shows_each_numbers_range_as_the_schema_checks_it():
    import re

    shown, section = {}, ""
    for line in (ROOT / "config.toml").read_text(encoding="utf-8").splitlines():
        header = re.match(r"\[\[?([^\]]+)\]\]?", line)
        if header:
            section = re.sub(
                r"^outputs\.siren_patterns\..*", "outputs.siren_patterns[]", header.group(1)
            )
            section = section.replace("alarm.levels", "alarm.levels[]")
            continue
        annotated = re.match(
            r"([a-z0-9_]+)\s*=.*\((-?[0-9.]+) \.\. (-?[0-9.]+)\)\s*$", line
        ) or re.match(r"([a-z0-9_]+)\s*=.*# (-?[0-9.]+) \.\. (-?[0-9.]+)\s*$", line)
        if annotated:
            shown[f"{section}.{annotated.group(1)}"] = (
                float(annotated.group(2)),
                float(annotated.group(3)),
            )
    ranges = schema_ranges()
    missing = sorted(
        key for key in ranges if key not in shown and not key.startswith("sensor.simulated.")
    )
    assert missing == []  # the simulator's keys are not in the deployment template
    for key, (low, high) in shown.items():
        assert ranges[key] == (low, high), key
