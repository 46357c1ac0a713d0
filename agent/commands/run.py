"""`gauge-agent run`: the daemon."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from agent.commands.common import default_config_path
from agent.config import DEFAULT_CONFIG_PATH, Config, load_config
from agent.i18n import N_, _

NAME = "run"
HELP = N_("run the gauge daemon")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help=_("configuration file (default {path}; with --simulate, the embedded default)").format(
            path=DEFAULT_CONFIG_PATH
        ),
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help=_("simulated sensor and gpiozero mock pins: runs on any machine"),
    )


def execute(args: argparse.Namespace) -> int:
    # Until run_daemon installs its handlers (after the imports below, which take a second on
    # a Pi Zero), a SIGHUP would kill the process: its default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from agent.main import run_daemon

    path = args.config if args.config or args.simulate else default_config_path()
    config = load_config(path) if path is not None else Config()
    return run_daemon(config, simulate=args.simulate, config_path=path)
