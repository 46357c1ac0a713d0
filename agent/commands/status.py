"""`gauge-agent status`: what the running daemon last wrote."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from agent.commands.common import load_or_default
from agent.i18n import N_, _

NAME = "status"
HELP = N_("what the running daemon last wrote")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--watch",
        type=_watch_period,
        metavar="SECONDS",
        help=_("print a line each time the status changes, every SECONDS"),
    )


def execute(args: argparse.Namespace) -> int:
    from agent.status import show_status

    return show_status(load_or_default(args.config), as_json=args.json, watch=args.watch)


def _watch_period(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.1 <= seconds <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(
            _("{text!r} must be a number of seconds from 0.1 to 3600").format(text=text)
        )
    return seconds
