"""`gauge-agent siren-test`: a confirmed test of the siren and every lamp. It says what will
sound and for how long, asks, and always ends with the siren off: at its time, on Ctrl-C, when
the command is killed or the SSH session drops (the daemon ends a test whose client has gone).
A real warning takes over at once. The daemon sends the test upstream as an event, so nobody
takes it for an alarm. With no daemon running (commissioning), it drives the outputs itself."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent import control
from agent.commands.common import (
    confirm,
    connect_to_daemon,
    daemon_error,
    load_or_default,
    whole_number,
)
from agent.config import Config
from agent.errors import EXIT_FAILURE, EXIT_OK, GaugeError
from agent.i18n import N_, _

NAME = "siren-test"
HELP = N_("test the siren and lamps (asks first; always ends with the siren off)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path)
    parser.add_argument(
        "--pattern",
        metavar="NAME",
        help=_("a configured siren pattern (default: the highest warning's)"),
    )
    parser.add_argument(
        "--seconds",
        type=whole_number(
            1,
            control.SIREN_TEST_MAX_S,
            _("{text!r} must be a whole number of seconds from {low} to {high}"),
        ),
        default=control.SIREN_TEST_DEFAULT_S,
        metavar="N",
        help=_("1 to {max} (default {default})").format(
            max=control.SIREN_TEST_MAX_S, default=control.SIREN_TEST_DEFAULT_S
        ),
    )
    parser.add_argument(
        "--quiet", action="store_true", help=_("the lamps only; the siren stays off")
    )
    parser.add_argument("--yes", action="store_true", help=_("do not ask"))


def execute(args: argparse.Namespace) -> int:
    config = load_or_default(args.config)
    pattern = args.pattern or control.default_test_pattern(config)
    pattern_config = config.pattern(pattern)
    if pattern_config is None:
        names = ", ".join(p.name for p in config.outputs.siren_patterns)
        raise GaugeError(
            _("no siren pattern {pattern!r}; configured: {names}").format(
                pattern=pattern, names=names
            )
        )
    if args.quiet:
        print(
            _("Every lamp will light for {seconds} s; the siren stays silent.").format(
                seconds=args.seconds
            )
        )
    else:
        rhythm = (
            _("continuously")
            if pattern_config.off_s == 0
            else _("{on:g} s on, {off:g} s off").format(
                on=pattern_config.on_s, off=pattern_config.off_s
            )
        )
        print(
            _(
                "The siren will sound '{pattern}' ({rhythm}) for {seconds} s and every lamp will"
                " light. People nearby will hear it: warn them first."
            ).format(pattern=pattern, rhythm=rhythm, seconds=args.seconds)
        )
    if not confirm(_("Start the test?"), args.yes):
        print(_("nothing sounded"))
        return EXIT_FAILURE
    request = {
        "command": "siren-test",
        "pattern": pattern,
        "seconds": args.seconds,
        "quiet": args.quiet,
    }
    client = connect_to_daemon(config, request, timeout_s=10.0)
    if client is None:
        return _without_daemon(config, pattern, args.seconds, args.quiet)
    try:
        for answer in control.answers(client):
            if not answer.get("ok") and "testing" not in answer:
                raise GaugeError(_("the daemon says: {error}").format(error=daemon_error(answer)))
            if answer.get("ok") and answer.get("testing"):
                print(_("testing (Ctrl-C ends it)..."), flush=True)
            if answer.get("done"):
                why = _(str(answer.get("why")))
                print(_("test over ({why}): the siren is off").format(why=why))
                return EXIT_OK
    except KeyboardInterrupt:
        print("\n" + _("stopped: the siren is off"))  # the daemon saw the connection close
        return EXIT_OK
    except OSError as error:
        raise GaugeError(
            _("lost the daemon during the test ({error})").format(error=error)
        ) from None
    raise GaugeError(_("the daemon ended the connection before the test was over"))


def _without_daemon(config: Config, pattern: str, seconds: int, quiet: bool) -> int:
    """Commissioning, no daemon: drive the outputs here, through the same annunciator."""
    from agent.annunciator import Annunciator
    from agent.outputs import GpioOutputs
    from agent.statelock import StateLock

    lock = StateLock(Path(config.storage.state_dir)).acquire()
    try:
        outputs = GpioOutputs(config.outputs)
        ended = _("test over")
        try:
            start = time.monotonic()
            annunciator = Annunciator(config, start)
            annunciator.start_test(start, pattern, seconds, quiet)
            print(_("testing, no daemon running (Ctrl-C ends it)..."), flush=True)
            while annunciator.testing(now := time.monotonic()):
                outputs.apply(annunciator.render(now))
                time.sleep(max(0.0, min(annunciator.next_change(now), start + seconds) - now))
        except KeyboardInterrupt:
            ended = "\n" + _("stopped")
        finally:
            released = outputs.close()  # every output off, whatever happened
        left_on = [name for name, state in released.items() if state]
        print(_("{ended}: the siren is off").format(ended=ended))
        if left_on:
            print(_("STILL ON: {outputs}").format(outputs=", ".join(left_on)))
    finally:
        lock.release()
    return EXIT_OK
