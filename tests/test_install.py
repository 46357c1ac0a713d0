"""What users install: the wheel `pip install .` builds, in a fresh venv, run from outside the
source tree; and scripts/install into a staging root.

The wheelhouse (the gauge-agent wheel and every dependency's, built once per test session) is
also what an offline install on the Pi uses: `scripts/install --wheelhouse DIR`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_for

needs_sysusers = pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None,
    reason="systemd-sysusers is not installed (.ci/run installs systemd)",
)

pytestmark = pytest.mark.slow  # the whole module: see pyproject's markers


@pytest.fixture(scope="session")
def installed(wheelhouse, tmp_path_factory) -> Path:
    """A fresh venv with gauge-agent installed from the wheelhouse only (non-editable)."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "gauge-agent",
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return venv


def clean_env(**extra: str) -> dict:
    """No PYTHONPATH, no source tree: only what the venv has."""
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(extra)
    return env


def test_the_wheel_carries_every_module_of_the_source_tree(wheelhouse):
    wheel = next(wheelhouse.glob("gauge_agent-*.whl"))
    in_wheel = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    in_tree = {str(path.relative_to(ROOT)) for path in (ROOT / "agent").rglob("*.py")}
    assert in_tree - in_wheel == set()
    assert "agent/sensors/simulated.py" in in_wheel


def test_every_command_runs_from_the_installed_package(installed, tmp_path):
    """check-config, run --simulate until it has sampled and uploaded to the reference receiver
    (also from the installed package), status, replay: from a directory with no source in it."""
    bin_dir = installed / "bin"
    env = clean_env(GPIOZERO_PIN_FACTORY="mock")
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import agent; print(agent.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert where.stdout.startswith(str(installed)), where.stdout

    shipped = subprocess.run(
        [str(bin_dir / "gauge-agent"), "check-config", "--config", str(ROOT / "config.toml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert shipped.returncode == 0 and 'kind = "hcsr04"' in shipped.stdout, shipped.stderr

    # The catalogue ships with the wheel: the same help in English and in Bahasa Indonesia.
    for language, env_lang, description in (
        ("en", "en_US.UTF-8", "Flood early-warning water-level gauge agent."),
        ("id", "id_ID.UTF-8", "Agen pos duga air untuk peringatan dini banjir."),
    ):
        helped = subprocess.run(
            [str(bin_dir / "gauge-agent"), "--help"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**env, "LANG": env_lang, "LANGUAGE": ""},
            timeout=60,
        )
        assert helped.returncode == 0 and description in helped.stdout, (language, helped)

    token = tmp_path / "token"
    token.write_text("installed-test-token\n")
    receiver_tokens = tmp_path / "receiver-tokens"
    receiver_tokens.write_text("benanga-01 installed-test-token\n")
    port = free_port()
    receiver_db = tmp_path / "receiver.sqlite"
    config = tmp_path / "config.toml"
    config.write_text(f"""
[sensor]
kind = "simulated"
interval_s = 0.2
alarm_interval_s = 0.1
[sensor.simulated]
time_scale = 60.0
[uplink]
url = "http://127.0.0.1:{port}/ingest"
token_file = "{token}"
[storage]
state_dir = "{tmp_path / "state"}"
runtime_dir = "{tmp_path / "run"}"
""")
    receiver = subprocess.Popen(
        [
            str(bin_dir / "python"),
            "-m",
            "agent.receiver",
            "--port",
            str(port),
            "--db",
            str(receiver_db),
            "--token-file",
            str(receiver_tokens),
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = subprocess.Popen(
        [str(bin_dir / "gauge-agent"), "run", "--simulate", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def readings_upstream() -> int:
            if not receiver_db.exists():
                return 0
            try:
                with sqlite3.connect(receiver_db) as db:
                    return db.execute(
                        "SELECT COUNT(*) FROM records WHERE type = 'reading'"
                    ).fetchone()[0]
            except sqlite3.OperationalError:  # the receiver is still making its tables
                return 0

        wait_for(lambda: readings_upstream() >= 5, 60, "readings at the reference receiver")
        status = subprocess.run(
            [str(bin_dir / "gauge-agent"), "status", "--json", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        record = json.loads(status.stdout)
        assert record["running"] and record["samples"] >= 5
        assert record["uplink"]["last_upload"] is not None
        daemon.send_signal(signal.SIGTERM)
        _, daemon_log = daemon.communicate(timeout=20)
        assert daemon.returncode == 0, daemon_log
        assert "Traceback" not in daemon_log
    finally:
        for process in (daemon, receiver):
            if process.poll() is None:
                process.kill()
            process.communicate()

    recording = tmp_path / "flood.csv"
    recording.write_text(
        "time,level\n" + "".join(f"{i * 10},{7.0 + i * 0.05:.2f}\n" for i in range(40))
    )
    replay = subprocess.run(
        [str(bin_dir / "gauge-agent"), "replay", str(recording)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    states = [
        json.loads(line)["state"]
        for line in replay.stdout.splitlines()
        if json.loads(line)["kind"] == "level"
    ]
    assert states == ["waspada", "siaga", "awas"]
    version = subprocess.run(
        [str(bin_dir / "python"), "-m", "agent", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert version.stdout.startswith("gauge-agent ")


def test_a_missing_sensor_library_is_one_line_and_exit_78_not_a_traceback(installed, tmp_path):
    """The wheel without the hcsr04 extra, configured for an HC-SR04: the unit must not
    restart-loop on a traceback (78 is RestartPreventExitStatus)."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[sensor]\nkind = "hcsr04"\n[storage]\nstate_dir = "{tmp_path}"\n'
        f'runtime_dir = "{tmp_path}"\n'
    )
    result = subprocess.run(
        [str(installed / "bin" / "gauge-agent"), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(GPIOZERO_PIN_FACTORY="mock"),
        timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert "pip install 'gauge-agent[hcsr04]'" in result.stderr.splitlines()[-1]


def test_no_gpio_back_end_is_one_line_and_exit_78_not_a_traceback(installed, tmp_path):
    """What the Pi did under the old unit: no pin factory can be loaded (here: not a Pi, no
    lgpio). One line that says what to install, and 78 so systemd does not restart-loop."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[sensor]\nkind = "simulated"\n[storage]\nstate_dir = "{tmp_path}"\n'
        f'runtime_dir = "{tmp_path}"\n'
    )
    env = clean_env()
    env.pop("GPIOZERO_PIN_FACTORY", None)
    result = subprocess.run(
        [str(installed / "bin" / "gauge-agent"), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr and "PinFactoryFallback" not in result.stderr
    assert "no GPIO back-end" in result.stderr and "python3-lgpio" in result.stderr


# -- scripts/install into a staging root ---------------------------------------------------------


def manifest(root: Path) -> dict[str, tuple]:
    """Every path under `root`: type, mode, owner, and content (hash) or link target."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        relative = str(path.relative_to(root))
        if relative.startswith("etc/.pwd.lock"):
            continue
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        entries[relative] = (
            stat.S_IFMT(info.st_mode),
            stat.S_IMODE(info.st_mode),
            info.st_uid,
            info.st_gid,
            content,
        )
    return entries


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "install"), *args], capture_output=True, text=True, timeout=600
    )


@needs_sysusers
def test_the_installer_into_a_staging_root_twice_gives_the_same_tree(wheelhouse, tmp_path):
    root = tmp_path / "root"
    args = ("--root", str(root), "--wheelhouse", str(wheelhouse), "--no-apt", "--extras", "none")
    first = install(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    before = manifest(root)
    second = install(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert manifest(root) == before
    assert "kept the existing" in second.stdout

    passwd = (root / "etc" / "passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines() if line.startswith("gauge-agent:"))
    assert user[5:] == ["/var/lib/gauge-agent", "/usr/sbin/nologin"]
    gid = int(user[3])
    etc = root / "etc" / "gauge-agent"
    config_stat = (etc / "config.toml").stat()
    assert (stat.S_IMODE(config_stat.st_mode), config_stat.st_uid, config_stat.st_gid) == (
        0o640,
        0,
        gid,
    )
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    assert (etc / "config.toml").read_bytes() == (ROOT / "config.toml").read_bytes()
    assert (
        os.readlink(root / "usr/local/bin/gauge-agent") == "/opt/gauge-agent/venv/bin/gauge-agent"
    )
    assert (root / "etc/systemd/system/multi-user.target.wants/gauge-agent.service").is_symlink()
    assert (root / "etc/systemd/system/gauge-agent.service").read_bytes() == (
        ROOT / "systemd" / "gauge-agent.service"
    ).read_bytes()
    venv_python = root / "opt/gauge-agent/venv/bin/python"
    check = subprocess.run(
        [str(venv_python), "-c", "import agent.sensors.simulated"], cwd=tmp_path, env=clean_env()
    )
    assert check.returncode == 0
    assert (
        "include-system-site-packages = true"
        in (root / "opt/gauge-agent/venv/pyvenv.cfg").read_text()
    )


@needs_sysusers
def test_the_installer_never_overwrites_a_configuration_and_uninstall_keeps_it(
    wheelhouse, tmp_path
):
    root = tmp_path / "root"
    args = ("--root", str(root), "--wheelhouse", str(wheelhouse), "--no-apt", "--extras", "none")
    assert install(*args).returncode == 0
    etc = root / "etc" / "gauge-agent"
    (etc / "config.toml").write_text("# the technician's own\n")
    (etc / "calibration.toml").write_text("[calibration]\nsensor_elevation_m = 10.43\n")
    (etc / "token").write_text("secret-token\n")
    os.chmod(etc / "config.toml", 0o600)  # as an old install left it
    again = install(*args)
    assert again.returncode == 0, again.stderr
    assert (etc / "config.toml").read_text() == "# the technician's own\n"
    assert (etc / "calibration.toml").read_text().endswith("10.43\n")
    assert (etc / "token").read_text() == "secret-token\n"
    assert stat.S_IMODE((etc / "config.toml").stat().st_mode) == 0o640  # readable by the service
    assert stat.S_IMODE((etc / "token").stat().st_mode) == 0o600
    assert "secret-token" not in again.stdout + again.stderr

    removed = install("--root", str(root), "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not (root / "opt" / "gauge-agent").exists()
    assert not (root / "etc/systemd/system/gauge-agent.service").exists()
    assert (etc / "calibration.toml").exists() and (etc / "token").exists()
    purged = install("--root", str(root), "--uninstall", "--purge")
    assert purged.returncode == 0 and not etc.exists()


@needs_sysusers
def test_an_upgrade_keeps_the_version_before_it_and_rollback_goes_back(wheelhouse, tmp_path):
    """A newer gauge-agent (this tree with its version bumped) over the installed one."""
    newer_tree = tmp_path / "newer"
    shutil.copytree(
        ROOT,
        newer_tree,
        ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__"),
    )
    init = newer_tree / "agent" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "99.'))
    newer_house = tmp_path / "wheels-newer"
    shutil.copytree(wheelhouse, newer_house)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(newer_house),
            str(newer_tree),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    root = tmp_path / "root"
    common = ("--root", str(root), "--no-apt", "--extras", "none")
    assert install(*common, "--wheelhouse", str(wheelhouse)).returncode == 0
    venv_python = root / "opt/gauge-agent/venv/bin/python"

    def version() -> str:
        return subprocess.run(
            [str(venv_python), "-c", "import agent; print(agent.__version__)"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_env(),
            check=True,
        ).stdout.strip()

    old = version()
    upgraded = install(*common, "--wheelhouse", str(newer_house))
    assert upgraded.returncode == 0, upgraded.stderr
    assert version() == f"99.{old}" and f"--rollback goes back to {old}" in upgraded.stdout
    rolled = install("--root", str(root), "--rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert version() == old and f"back to gauge-agent {old}" in rolled.stdout
