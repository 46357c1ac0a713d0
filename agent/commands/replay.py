"""`gauge-agent replay CSV`: a recording through the pipeline, events as JSON lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.config import load_config
from agent.errors import EXIT_OK, EXIT_USAGE
from agent.i18n import N_, _
from agent.units import UNIT_TO_M, VALUE_KINDS

NAME = "replay"
HELP = N_("run a recording through the pipeline")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", type=Path, metavar="CSV")
    parser.add_argument("--config", type=Path, help=_("configuration (default: embedded default)"))
    parser.add_argument(
        "--time-column", default="time", help=_("column of the times (default: %(default)s)")
    )
    parser.add_argument(
        "--value-column", default="level", help=_("column of the values (default: %(default)s)")
    )
    parser.add_argument(
        "--value-kind",
        choices=VALUE_KINDS,
        default="level",
        help=_("what the values are (default: %(default)s)"),
    )
    parser.add_argument(
        "--unit", choices=sorted(UNIT_TO_M), default="m", help=_("unit of the value column")
    )
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COL=VALUE",
        help=_("keep only rows where COL equals VALUE (repeatable)"),
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help=_("override one config key, TOML value (repeatable)"),
    )
    parser.add_argument(
        "--plot", type=Path, metavar="OUT.png", help=_("also draw the levels and warnings")
    )


def execute(args: argparse.Namespace) -> int:
    from agent.replay import ReplayOptions, run_replay

    where = []
    for item in args.where:
        column, sep, value = item.partition("=")
        if not sep or not column:
            message = _("--where {value} must look like COLUMN=VALUE").format(value=repr(item))
            print(f"gauge-agent replay: {message}", file=sys.stderr)
            return EXIT_USAGE
        where.append((column.strip(), value.strip()))
    config = load_config(args.config, args.overrides)
    options = ReplayOptions(
        time_column=args.time_column,
        value_column=args.value_column,
        value_kind=args.value_kind,
        unit=args.unit,
        where=where,
    )
    run_replay(args.csv, config, options, plot_path=args.plot)
    return EXIT_OK
