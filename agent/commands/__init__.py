"""The `gauge-agent` commands, one module each.

To add a command, write `agent/commands/<name>.py` with
- `NAME`: the word on the command line, `HELP`: one line for `gauge-agent --help`,
- `add_arguments(parser)`: its options on an argparse sub-parser,
- `execute(args) -> int`: does the work and returns an exit code (agent.errors.EXIT_*); it
  raises a GaugeError for anything a person must read, and agent.cli turns that into a message
  and an exit code,
and add its module name to COMMANDS below (the order of `--help`). Import heavy modules (the
daemon, the replay, matplotlib) inside `execute`, so `gauge-agent --help` stays quick on a Pi.
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Protocol

COMMANDS = (
    "run",
    "replay",
    "check_config",
    "status",
    "read",
    "calibrate",
    "maintenance",
    "siren_test",
    "queue",
)


class Command(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def execute(self, args: argparse.Namespace) -> int: ...


def load_commands() -> dict[str, ModuleType]:
    """Every registered command module by its command-line name, in COMMANDS order."""
    modules = [importlib.import_module(f"{__name__}.{name}") for name in COMMANDS]
    return {module.NAME: module for module in modules}
