"""Outbox files moved aside as damaged (agent.outbox) that still hold readable records: each
is sent by an uploader of its own, under its own epoch, and deleted once it is empty."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from pathlib import Path

from agent.config import Config
from agent.outbox import SALVAGE_PREFIX, Outbox
from agent.supervision import ThreadHealth
from agent.uplink import Uploader

log = logging.getLogger("gauge-agent")

Drain = tuple[Outbox, Uploader]


def salvage_uploaders(
    config: Config, health: ThreadHealth, paths: list[Path] | None = None
) -> list[Drain]:
    """An uploader for each salvaged outbox (`paths`, or every one in the state directory)
    with records left: they are sent under their own epoch."""
    if not config.uplink.url:
        return []  # store only: the salvaged files stay for the technician to take
    if paths is None:
        paths = sorted(Path(config.storage.state_dir).glob(f"{SALVAGE_PREFIX}*.sqlite"))
    drains = []
    for path in paths:
        try:
            box = Outbox(path, health=health)
        except sqlite3.Error as error:
            log.error("salvaged outbox %s cannot be opened: %s", path.name, error)
            continue
        # A salvaged file is all backlog: it goes at once, never waits for a calm batch.
        uploader = Uploader(
            box, dataclasses.replace(config.uplink, batch_s=0.0), config.station.id, health=health
        )
        uploader.start()
        drains.append((box, uploader))
    return drains


def tend(drains: list[Drain], outbox: Outbox | None, config: Config, health: ThreadHealth) -> None:
    """Called from the daemon's loop: remove what is delivered, restart a drain whose thread
    died, and start one for each file the running outbox has just moved aside."""
    for drain in list(drains):
        box, uploader = drain
        if box.stats()["depth"] == 0:
            uploader.stop(timeout=1.0)
            box.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{box.path}{suffix}").unlink(missing_ok=True)
            drains.remove(drain)
            log.info("salvaged outbox %s delivered and removed", box.path.name)
        else:
            uploader.ensure_running()
    if outbox is not None and outbox.salvaged:
        # The outbox replaced a damaged file while running: send what it salvaged.
        draining = {box.path for box, _ in drains}
        fresh = [path for path in outbox.take_salvaged() if path not in draining]
        drains += salvage_uploaders(config, health, fresh)
