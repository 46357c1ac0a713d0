"""A real systemd as PID 1, in a `systemd-nspawn` container, for testing the unit where it runs.

The root is Debian bookworm (what Raspberry Pi OS Bookworm is built on: the same systemd 252 and
Python 3.11) made with `debootstrap --variant=minbase`, cached between runs in
GAUGE_TEST_ROOTFS_CACHE (a directory; about 300 MB, a minute or two to make). Commands run inside
with `nsenter` into the container's namespaces: `--register=no` because there is no host system
bus, `--keep-unit` because there is no host systemd to make a scope.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOTFS_CACHE = Path(
    os.environ.get("GAUGE_TEST_ROOTFS_CACHE", "/var/cache/gauge-agent-tests/bookworm-minbase")
)
PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv"
MIRROR = os.environ.get("GAUGE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
INSIDE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def unavailable_reason() -> str | None:
    """Why the container cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, mknod, debootstrap)"
    for tool in ("systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs systemd-container)"
    if not (ROOTFS_CACHE / ".complete").exists() and shutil.which("debootstrap") is None:
        return "debootstrap is not installed and no cached root exists (.ci/run installs it)"
    return None


def cached_rootfs() -> Path:
    """The bookworm root, made once and reused."""
    marker = ROOTFS_CACHE / ".complete"
    if marker.exists():
        return ROOTFS_CACHE
    if ROOTFS_CACHE.exists():
        shutil.rmtree(ROOTFS_CACHE)  # an interrupted earlier attempt
    ROOTFS_CACHE.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={PACKAGES}",
            "bookworm",
            str(ROOTFS_CACHE),
            MIRROR,
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    marker.touch()
    return ROOTFS_CACHE


class Container:
    def __init__(self, root: Path):
        self.root = root
        self.process: subprocess.Popen | None = None
        self.leader: int | None = None
        self.log = root.parent / "nspawn.log"

    def boot(self, timeout: float = 90.0) -> Container:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--register=no",
                    "--keep-unit",
                    "--quiet",
                    "--console=pipe",
                    "-D",
                    str(self.root),
                    "--boot",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {self.log.read_text()[-2000:]}")
            self.leader = self.leader or _container_init(self.process.pid)
            if self.leader is not None:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return self
            time.sleep(0.5)
        raise RuntimeError(f"the container did not finish booting: {self.log.read_text()[-2000:]}")

    def run(
        self, *command: str, check: bool = True, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """A command inside the container, with a clean environment (nothing of the host's)."""
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={"PATH": INSIDE_PATH, "LANG": "C.UTF-8"},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        output = self.run("systemctl", "show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """A file in the container's own file system (its /run and /dev are its own tmpfs, so
        those go through `run`)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chmod(target, mode)

    def poweroff(self, timeout: float = 60.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=30)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _container_init(nspawn_pid: int) -> int | None:
    """The container's PID 1 (systemd), seen from here: a descendant of systemd-nspawn."""
    children = _children(nspawn_pid)
    for child in children + [grandchild for c in children for grandchild in _children(c)]:
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                return child
        except OSError:
            continue
    return None


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found
