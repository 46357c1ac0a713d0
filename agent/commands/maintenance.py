"""`gauge-agent maintenance on --minutes N` / `off`: while a technician cleans or moves the
sensor, the daemon flags its readings `maintenance` (upstream and in the status) so nobody
takes a hand in the beam for the water. The alarm logic keeps running; it ends by itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent import control
from agent.commands.common import ask_daemon, daemon_error, load_or_default, whole_number
from agent.errors import EXIT_OK, GaugeError
from agent.i18n import N_, _

NAME = "maintenance"
HELP = N_("flag readings while you work on the sensor (alarms keep running; ends by itself)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path)
    actions = parser.add_subparsers(dest="action", required=True, metavar="on|off")
    on = actions.add_parser("on", help=_("start, for --minutes"))
    on.add_argument(
        "--minutes",
        type=whole_number(
            1,
            control.MAINTENANCE_MAX_MINUTES,
            _("{text!r} must be a whole number of minutes from {low} to {high}"),
        ),
        required=True,
        metavar="N",
        help=_("1 to {max}; it ends by itself then").format(max=control.MAINTENANCE_MAX_MINUTES),
    )
    actions.add_parser("off", help=_("end it now"))


def execute(args: argparse.Namespace) -> int:
    config = load_or_default(args.config)
    minutes = args.minutes if args.action == "on" else 0
    answer = ask_daemon(config, {"command": "maintenance", "minutes": minutes})
    if answer is None:
        raise GaugeError(
            _("no daemon running: nothing is being reported, so there is nothing to flag")
        )
    if not answer.get("ok"):
        raise GaugeError(_("the daemon says: {error}").format(error=daemon_error(answer)))
    if minutes:
        print(
            _(
                "maintenance on until {until}: readings are flagged; the alarms keep running."
                " `gauge-agent maintenance off` when you are done"
            ).format(until=answer.get("until"))
        )
    else:
        print(_("maintenance off: readings are the water again"))
    return EXIT_OK
