"""The command line contract: commands, exit codes, one line per configuration problem."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, run_cli


def test_check_config_prints_the_effective_configuration():
    result = run_cli("check-config", "--config", str(ROOT / "config.toml"))
    assert result.returncode == 0, result.stderr
    assert "[alarm]\ndeadband_m = 0.05\n" in result.stdout
    assert '[[alarm.levels]]\nname = "siaga"\nabove_m = 7.9\n' in result.stdout
    assert "[outputs.siren_patterns.intermittent]\non_s = 5.0\noff_s = 25.0" in result.stdout


def test_check_config_reports_every_problem_on_its_own_line_with_exit_78(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        """
[sensor]
interval_s = 0
[[alarm.levels]]
name = "waspada"
above_m = 7.5
[[alarm.levels]]
name = "siaga"
above_m = 7.2
[alarm.rate]
raise = "waspada"
""",
        encoding="utf-8",
    )
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 78
    # Every kind of problem in one run: a wrong value, an unknown key, a rule between keys.
    assert result.stderr.splitlines() == [
        "sensor.interval_s: 0 must be from 0.01 to 3600 seconds",
        "alarm.rate.raise: unknown key (did you mean 'raises'?)",
        "alarm.levels[1].above_m: 7.2 must be above alarm.levels[0].above_m (7.5)",
    ]
    assert result.stdout == ""


def test_check_config_without_a_file_names_the_default_path(tmp_path):
    missing = tmp_path / "etc" / "config.toml"
    result = run_cli("check-config", env={"GAUGE_AGENT_CONFIG": str(missing)})
    assert result.returncode == 78
    assert result.stderr.strip() == (
        f"{missing}: no such file (pass --config PATH, or create it from the config.toml template)"
    )


@pytest.mark.slow
def test_run_with_a_bad_configuration_exits_78_without_a_traceback(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[alarm]\nstale_after_s = -5\n", encoding="utf-8")
    result = run_cli("run", "--simulate", "--config", str(path))
    assert result.returncode == 78
    assert result.stderr.strip() == "alarm.stale_after_s: -5 must be from 1 to 604800 seconds"


@pytest.mark.slow
def test_usage_errors_exit_2():
    assert run_cli().returncode == 2
    assert run_cli("replay").returncode == 2
    assert run_cli("replay", "x.csv", "--value-kind", "weight").returncode == 2
    assert run_cli("frobnicate").returncode == 2


@pytest.mark.slow
def test_an_unknown_command_is_a_usage_error_that_lists_the_commands():
    result = run_cli("frobnicate")
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr
    for command in ("run", "read", "calibrate", "siren-test", "maintenance", "queue"):
        assert f"'{command}'" in result.stderr


def test_status_without_a_running_daemon_says_so(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nruntime_dir = "{tmp_path / "run"}"\n', encoding="utf-8")
    result = run_cli("status", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"gauge-agent: no status at {tmp_path / 'run'}/status.json:"
        " is the daemon running? (systemctl status gauge-agent)"
    )


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("gauge-agent ")
