"""`gauge-agent check-config`: validate, print the effective configuration (exit 0 or 78)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.commands.common import load
from agent.config import DEFAULT_CONFIG_PATH, to_toml
from agent.errors import EXIT_OK
from agent.i18n import N_, _

NAME = "check-config"
HELP = N_("validate and print the configuration")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help=_("configuration file (default: {path})").format(path=DEFAULT_CONFIG_PATH),
    )


def execute(args: argparse.Namespace) -> int:
    sys.stdout.write(to_toml(load(args.config)))
    return EXIT_OK
