"""`gauge-agent` command line: builds the parser from the registered commands (agent.commands)
and turns every error a person must read into one message and an exit code: 0 ok, 2 usage,
78 configuration error, 1 other."""

from __future__ import annotations

import argparse
import sys

from agent import __version__
from agent.commands import load_commands
from agent.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    ConfigError,
    GaugeError,
    InstallationError,
)
from agent.i18n import LANGUAGES, _, use_language


def _parser(commands: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gauge-agent", description=_("Flood early-warning water-level gauge agent.")
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"gauge-agent {__version__}",
        help=_("show the version and exit"),
    )
    parser.add_argument(
        "--lang",
        choices=LANGUAGES,
        help=_("language of what people read: en or id (default: from LANG)"),
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in commands.items():
        command.add_arguments(subparsers.add_parser(name, help=_(command.HELP)))
    return parser


def _language(argv: list[str]) -> str | None:
    """--lang before the parser exists: the help it builds is already in that language."""
    for index, word in enumerate(argv):
        if word == "--lang" and index + 1 < len(argv):
            return argv[index + 1] if argv[index + 1] in LANGUAGES else None
        if word.startswith("--lang="):
            value = word.split("=", 1)[1]
            return value if value in LANGUAGES else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    use_language(_language(argv))
    commands = load_commands()
    args = _parser(commands).parse_args(argv)  # exits 2 on usage errors
    try:
        return commands[args.command].execute(args)
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
