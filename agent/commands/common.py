"""What several commands share: where the configuration is, and how to read it."""

from __future__ import annotations

import os
from pathlib import Path

from agent.config import DEFAULT_CONFIG_PATH, Config, load_config


def default_config_path() -> Path:
    """The configuration a command reads without --config: $GAUGE_AGENT_CONFIG, else the
    installed /etc path."""
    return Path(os.environ.get("GAUGE_AGENT_CONFIG", DEFAULT_CONFIG_PATH))


def load(path: Path | None) -> Config:
    return load_config(path if path is not None else default_config_path())


def load_or_default(path: Path | None) -> Config:
    """For commands that read what the daemon writes: without a config file, the embedded
    default (the demo's daemon uses it too)."""
    if path is None and not default_config_path().exists():
        return Config()
    return load(path)
