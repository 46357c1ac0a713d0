"""`gauge-agent queue status` / `queue export --out FILE [--since TIME]` /
`queue retry-dead-letters`: the outbox, seen and
taken home on a USB stick when the link has been down for weeks, without deleting anything
and without stopping the daemon (SQLite's write-ahead log lets a reader in beside it).

The CSV has the columns of the upstream format (docs/upstream.md): station, epoch, seq, type,
time, then every field the records carry (nested values as JSON), and for the dead letters the
upstream's status and reason. Salvaged files (moved aside as damaged) are exported too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from agent.commands.common import ask_daemon, daemon_error, load_or_default
from agent.config import Config
from agent.errors import EXIT_OK, GaugeError
from agent.i18n import N_, _
from agent.outbox import OUTBOX_FILE_NAME, SALVAGE_PREFIX
from agent.units import format_utc

NAME = "queue"
HELP = N_("the outbox: what waits for upstream, exported to CSV without stopping the daemon")
FIXED_COLUMNS = ["station", "epoch", "seq", "type", "time", "queue"]
TABLES = (("events", "waiting"), ("readings", "waiting"), ("dead_letters", "dead_letter"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("status", help=_("how much waits, since when, and the dead letters"))
    export = actions.add_parser("export", help=_("write what waits (and the dead letters) as CSV"))
    actions.add_parser(
        "retry-dead-letters",
        help=_("send the records upstream refused again (after it was fixed); needs the daemon"),
    )
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.add_argument(
        "--since",
        type=_since,
        metavar="TIME",
        help=_("only records from then on (ISO 8601, e.g. 2026-11-01T00:00Z)"),
    )


def _since(text: str) -> float:
    from agent.replay import parse_time

    moment = parse_time(text)
    if moment is None:
        raise argparse.ArgumentTypeError(
            _("{text!r} is not a time (ISO 8601 or epoch seconds)").format(text=text)
        )
    return moment


def execute(args: argparse.Namespace) -> int:
    config = load_or_default(args.config)
    files = outbox_files(config)
    if args.action == "status":
        return _status(config, files)
    if args.action == "retry-dead-letters":
        return _retry(config)
    return _export(config, files, args.out, args.since)


def _retry(config: Config) -> int:
    """Through the daemon: it owns the outbox file and its counts."""
    answer = ask_daemon(config, {"command": "retry-dead-letters"})
    if answer is None:
        raise GaugeError(
            _(
                "no daemon running: start it (sudo systemctl start gauge-agent) and try again;"
                " it sends what is queued, then the dead letters put back"
            )
        )
    if not answer.get("ok"):
        raise GaugeError(_("the daemon says: {error}").format(error=daemon_error(answer)))
    print(
        _("{count} dead letters are back in the queue and go upstream next").format(
            count=answer.get("requeued")
        )
    )
    return EXIT_OK


def outbox_files(config: Config) -> list[Path]:
    state = Path(config.storage.state_dir)
    main = state / OUTBOX_FILE_NAME
    salvaged = sorted(state.glob(f"{SALVAGE_PREFIX}*.sqlite"))
    return ([main] if main.exists() else []) + salvaged


def _open(path: Path) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        connection.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        return connection
    except sqlite3.Error as error:
        hint = (
            " " + _("(try sudo)")
            if "readonly" in str(error) or "unable to open" in str(error)
            else ""
        )
        raise GaugeError(
            _("cannot read {path}: {reason}").format(path=path, reason=error) + hint
        ) from None


def _epoch(connection: sqlite3.Connection) -> str:
    row = connection.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    return row[0] if row else ""


def _status(config: Config, files: list[Path]) -> int:
    if not files:
        print(
            _("no outbox in {path}: nothing has been stored yet").format(
                path=config.storage.state_dir
            )
        )
        return EXIT_OK
    for path in files:
        with closing(_open(path)) as connection:
            print(f"{path} (epoch {_epoch(connection)})")
            for table, _queue in TABLES:
                count, first, last = connection.execute(
                    f"SELECT COUNT(*), MIN(time), MAX(time) FROM {table}"
                ).fetchone()
                span = f", {format_utc(first)} to {format_utc(last)}" if count else ""
                print(f"  {table.replace('_', ' ')}: {count}{span}")
            reasons = connection.execute(
                "SELECT status, reason, COUNT(*) FROM dead_letters GROUP BY status, reason"
                " ORDER BY 3 DESC LIMIT 5"
            ).fetchall()
            for status, reason, count in reasons:
                print(f"    {count} refused: HTTP {status}, {reason}")
    return EXIT_OK


def _rows(files: list[Path], station: str, since: float | None) -> Iterator[dict]:
    """Each file's records in `seq` order (the order they were made in)."""
    for path in files:
        yield from sorted(_file_rows(path, station, since), key=lambda record: record["seq"])


def _file_rows(path: Path, station: str, since: float | None) -> Iterator[dict]:
    with closing(_open(path)) as connection:
        epoch = _epoch(connection)
        for table, queue in TABLES:
            extra = ", status, reason" if table == "dead_letters" else ""
            query = f"SELECT seq, type, time, body{extra} FROM {table}"
            parameters: tuple = ()
            if since is not None:
                query += " WHERE time >= ?"
                parameters = (since,)
            for row in connection.execute(query + " ORDER BY seq", parameters):
                seq, record_type, time_s, body = row[:4]
                try:
                    fields = json.loads(body)
                except ValueError:
                    fields = {"body_unreadable": body}
                record = {
                    "station": station,
                    "epoch": epoch,
                    "seq": seq,
                    "type": record_type,
                    "time": format_utc(time_s),
                    "queue": queue,
                    **(fields if isinstance(fields, dict) else {"body": fields}),
                }
                if table == "dead_letters":
                    record["refused_status"], record["refused_reason"] = row[4], row[5]
                yield record


def _export(config: Config, files: list[Path], out: Path, since: float | None) -> int:
    if not files:
        raise GaugeError(
            _("no outbox in {path}: nothing to export").format(path=config.storage.state_dir)
        )
    records = list(_rows(files, config.station.id, since))
    columns = FIXED_COLUMNS + sorted(
        {key for record in records for key in record} - set(FIXED_COLUMNS)
    )
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns, restval="")
            writer.writeheader()
            for record in records:
                writer.writerow({key: _cell(value) for key, value in record.items()})
            handle.flush()
            os.fsync(handle.fileno())  # a USB stick pulled right after: the file is whole
        os.replace(temporary, out)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise GaugeError(
            _("cannot write {path}: {reason}").format(path=out, reason=error.strerror or error)
        ) from None
    counts = {
        queue: sum(1 for r in records if r["queue"] == queue)
        for queue in ("waiting", "dead_letter")
    }
    print(
        _(
            "wrote {path}: {waiting} records waiting for upstream and {dead} dead letters,"
            " from {files} file(s); nothing deleted"
        ).format(path=out, waiting=counts["waiting"], dead=counts["dead_letter"], files=len(files))
    )
    return EXIT_OK


def _cell(value: object) -> object:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    return value
