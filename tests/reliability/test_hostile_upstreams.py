"""The daemon, as a process, against each upstream that misbehaves: it keeps sampling, says
what is wrong (status, faults), never loops hot, never takes a bad answer for delivery, never
leaks its token; and once a good upstream answers at the same address, everything it stored
arrives. The front is one listening socket whose behaviour turns into forwarding to the real
reference receiver process."""

from __future__ import annotations

import time

import pytest

from agent.uplink import REFUSING_AFTER
from tests.conftest import daemon_status, running_daemon, wait_for
from tests.hostile_upstream import (
    HostileUpstream,
    answer,
    echo,
    forward_to,
    garbage,
    huge_body,
    trickle,
)
from tests.reliability.conftest import scale
from tests.reliability.harness import (
    TOKEN,
    ReceiverProcess,
    dead_letter_texts,
    gauge_config,
    ledger,
    queued,
    rss_mb,
    stop_daemon,
)

QUOTA_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Kuota habis</title></head>"
    b"<body>Paket data Anda telah habis.</body></html>"
)
ODD_RETRY_AFTER = ["0", "-5", "NaN", "Thu, 01 Jan 1970 00:00:00 GMT", "1e9", ""]


def retry_after_oddities(connection, request):
    """503 with a different odd Retry-After each time."""
    retry_after_oddities.count = getattr(retry_after_oddities, "count", 0) + 1
    value = ODD_RETRY_AFTER[retry_after_oddities.count % len(ODD_RETRY_AFTER)]
    answer("503 Service Unavailable", {"Retry-After": value})(connection, request)


# id: (behaviour, what the status must say while it lasts)
HOSTILE = {
    "garbage": (garbage, "connection failed"),
    "html-200": (answer("200 OK", {"Content-Type": "text/html"}, QUOTA_PAGE), "web page"),
    "redirect-302": (None, "redirected to"),
    "redirect-307": (None, "redirected to"),
    "trickle": (trickle(every_s=0.3), "no complete answer within 2 s"),
    "huge-body": (huge_body(), "HTTP 500"),
    "retry-after-oddities": (retry_after_oddities, "HTTP 503"),
    "401-storm": (answer("401 Unauthorized", {"WWW-Authenticate": "Bearer"}), "token refused"),
    "refuse-everything": (echo("400 Bad Request"), "HTTP 400"),
}
FAULT = {"401-storm": "auth", "refuse-everything": "upstream_refusing"}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_upstream_costs_nothing_and_everything_arrives_once_it_behaves(
    tmp_path, name, report
):
    hostile_s = scale(5, 60)
    receiver = ReceiverProcess(tmp_path)
    behaviour, says = HOSTILE[name]
    if name.startswith("redirect"):
        # Pointing at the real receiver: a followed redirect would deliver there (and a 302
        # would turn the POST into a GET whose 200 deletes the batch).
        behaviour = answer(f"{name[-3:]} Moved", {"Location": receiver.url})
    front = HostileUpstream(behaviour)
    config = gauge_config(tmp_path, front.url)
    log_path = tmp_path / "daemon.log"
    try:
        with (
            open(log_path, "w") as log,
            running_daemon(config, "--simulate", stderr=log) as process,
        ):
            wait_for(
                lambda: daemon_status(tmp_path).get("samples", 0) > 2,
                20,
                "the daemon's first samples",
            )
            first = daemon_status(tmp_path)
            baseline_rss = rss_mb(process.pid)
            started = time.monotonic()
            peak_rss = baseline_rss
            while time.monotonic() - started < hostile_s:
                assert process.poll() is None, log_path.read_text()[-3000:]
                peak_rss = max(peak_rss, rss_mb(process.pid))
                time.sleep(0.2)
            status = daemon_status(tmp_path)
            requests = front.requests
            # It kept sampling at its pace (10 a second) the whole time.
            assert status["samples"] - first["samples"] >= hostile_s * 5, status["samples"]
            assert says in (status["uplink"]["last_error"] or ""), status["uplink"]
            if name in FAULT:
                assert FAULT[name] in status["faults"], status["faults"]
            assert receiver.arrivals() == []  # nothing reached it behind our back
            assert queued(status) > hostile_s * 5  # all of it kept
            # No hot loop: at least 1 s between attempts (a 400 is split down to single
            # records first, a few dozen quick requests, then waits too).
            allowed = hostile_s + 3 + (40 if name == "refuse-everything" else 0)
            assert requests <= allowed, f"{requests} requests in {hostile_s} s"
            assert peak_rss - baseline_rss < 40, f"RSS grew {peak_rss - baseline_rss:.0f} MB"

            front.behaviour = forward_to(receiver.port)  # the upstream behaves again
            turned = time.monotonic()
            wait_for(
                lambda: (
                    lambda s: (
                        queued(s) <= 3
                        and s["uplink"]["last_error"] is None
                        and not {"auth", "upstream_refusing"} & set(s["faults"])
                    )
                )(daemon_status(tmp_path)),
                60,
                "the backlog to drain to the good upstream",
            )
            drained_s = time.monotonic() - turned
            stop_daemon(process, log_path)
        books = ledger(tmp_path / "state", receiver)
    finally:
        front.close()
        receiver.close()
    log_text = log_path.read_text()
    assert books.lost == [] and books.dropped_for_backlog == 0
    expected_dead = REFUSING_AFTER if name == "refuse-everything" else 0
    assert len(books.dead_letters) == expected_dead, books.dead_letters
    assert books.out_of_order() == []
    for text in (
        log_text,
        *dead_letter_texts(tmp_path / "state"),
        (tmp_path / "run" / "status.json").read_text(),
    ):
        assert TOKEN not in text
    report(
        f"hostile upstream: {name}",
        1,
        len(books.lost),
        hostile_s=hostile_s,
        requests_while_hostile=requests,
        records=books.last,
        dead_lettered=len(books.dead_letters),
        drained_after_s=round(drained_s, 1),
        rss_growth_mb=round(peak_rss - baseline_rss, 1),
    )
