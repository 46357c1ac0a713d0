"""`gauge-agent` command line. Exit codes: 0 ok, 2 usage, 78 configuration error, 1 other."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from pathlib import Path

from agent import __version__
from agent.config import DEFAULT_CONFIG_PATH, Config, load_config, to_toml
from agent.errors import ConfigError, GaugeError, InstallationError
from agent.pipeline import UNIT_TO_M, VALUE_KINDS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; systemd and monitoring know it


def default_config_path() -> Path:
    return Path(os.environ.get("GAUGE_AGENT_CONFIG", DEFAULT_CONFIG_PATH))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gauge-agent",
        description="Flood early-warning water-level gauge agent.")
    parser.add_argument("--version", action="version", version=f"gauge-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gauge daemon")
    run.add_argument("--config", type=Path, help=f"configuration file (default"
                     f" {DEFAULT_CONFIG_PATH}; with --simulate, the embedded default)")
    run.add_argument("--simulate", action="store_true",
                     help="simulated sensor and gpiozero mock pins: runs on any machine")

    replay = commands.add_parser("replay", help="run a recording through the pipeline")
    replay.add_argument("csv", type=Path, metavar="CSV")
    replay.add_argument("--config", type=Path, help="configuration (default: embedded default)")
    replay.add_argument("--time-column", default="time")
    replay.add_argument("--value-column", default="level")
    replay.add_argument("--value-kind", choices=VALUE_KINDS, default="level")
    replay.add_argument("--unit", choices=sorted(UNIT_TO_M), default="m",
                        help="unit of the value column")
    replay.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                        help="keep only rows where COL equals VALUE (repeatable)")
    replay.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="override one config key, TOML value (repeatable)")
    replay.add_argument("--plot", type=Path, metavar="OUT.png")

    check = commands.add_parser("check-config", help="validate and print the configuration")
    check.add_argument("--config", type=Path)

    status = commands.add_parser("status", help="what the running daemon last wrote")
    status.add_argument("--config", type=Path)
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", type=_watch_period, metavar="SECONDS",
                        help="print a line each time the status changes, every SECONDS")
    return parser


def _watch_period(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.1 <= seconds <= 3600:      # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds from 0.1 to"
                                         " 3600")
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on usage errors
    try:
        return _dispatch(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except InstallationError as error:
        print(f"gauge-agent: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except GaugeError as error:
        print(f"gauge-agent: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:  # `gauge-agent replay ... | head`
        sys.stderr.close()
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        config = _load(args.config)
        sys.stdout.write(to_toml(config))
        return EXIT_OK
    if args.command == "replay":
        return _replay(args)
    if args.command == "run":
        # Until run_daemon installs its handlers (after the imports below, which take a
        # second on a Pi Zero), a SIGHUP would kill the process: its default action.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        from agent.daemon import run_daemon
        path = args.config if args.config or args.simulate else default_config_path()
        config = load_config(path) if path is not None else Config()
        return run_daemon(config, simulate=args.simulate, config_path=path)
    if args.command == "status":
        from agent.status import show_status
        return show_status(_load_for_status(args.config), as_json=args.json, watch=args.watch)
    raise AssertionError(args.command)


def _load(path: Path | None) -> Config:
    return load_config(path if path is not None else default_config_path())


def _load_for_status(path: Path | None) -> Config:
    """status reads where the daemon writes; without a config file, the embedded default."""
    if path is None and not default_config_path().exists():
        return Config()
    return _load(path)


def _replay(args: argparse.Namespace) -> int:
    from agent.replay import ReplayOptions, run_replay
    where = []
    for item in args.where:
        column, sep, value = item.partition("=")
        if not sep or not column:
            print(f"gauge-agent replay: --where {item!r} must look like COLUMN=VALUE",
                  file=sys.stderr)
            return EXIT_USAGE
        where.append((column.strip(), value.strip()))
    config = load_config(args.config, args.overrides)
    options = ReplayOptions(time_column=args.time_column, value_column=args.value_column,
                            value_kind=args.value_kind, unit=args.unit, where=where)
    run_replay(args.csv, config, options, plot_path=args.plot)
    return EXIT_OK
