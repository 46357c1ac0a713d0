"""The effective configuration as TOML (check-config): what the gauge will really use."""

from __future__ import annotations

import dataclasses
from typing import Any

from agent.config.schema import NAMED_TABLES, Config


def to_toml(config: Config) -> str:
    lines: list[str] = []
    for section in dataclasses.fields(config):
        _emit_table(getattr(config, section.name), section.name, lines)
    return "\n".join(lines).strip() + "\n"


def _emit_table(node: Any, path: str, lines: list[str]) -> None:
    scalars, tables = [], []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value) or (
            isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0])
        ):
            tables.append((f.name, value))
        else:
            scalars.append((f.name, value))
    lines.append(f"\n[{path}]")
    for name, value in scalars:
        lines.append(f"{name} = {_toml_value(value)}")
    for name, value in tables:
        if dataclasses.is_dataclass(value):
            _emit_table(value, f"{path}.{name}", lines)
        elif type(value[0]) in NAMED_TABLES:
            for item in value:
                lines.append(f"\n[{path}.{name}.{item.name}]")
                lines.extend(
                    f"{f.name} = {_toml_value(getattr(item, f.name))}"
                    for f in dataclasses.fields(item)
                    if f.name != "name"
                )
        else:
            for item in value:
                lines.append(f"\n[[{path}.{name}]]")
                lines.extend(
                    f"{f.name} = {_toml_value(getattr(item, f.name))}"
                    for f in dataclasses.fields(item)
                )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
