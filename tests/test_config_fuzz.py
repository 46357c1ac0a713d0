"""Generated bad configuration files, as a technician's typo or a field file would arrive.

Starting from the embedded default (as check-config prints it), hypothesis changes any
combination of keys to a value of the wrong type, a number no gauge could mean, or text with
control characters; adds unknown keys, a key given twice, a syntax error, levels out of order.
`gauge-agent check-config` (the real command line, in-process for speed) must exit 78, never
raise, and name every planted problem on a line of its own, in one run.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import cli
from agent.config import Config, to_toml

DEFAULT = tomllib.loads(to_toml(Config()))
FUZZ = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

pytestmark = pytest.mark.slow  # the whole module: see pyproject's markers


def leaves(node, path=()):
    """(path, value) of every scalar (or list of scalars) in the TOML-shaped data."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, path + (key,))
    elif isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        for index, item in enumerate(node):
            yield from leaves(item, path[:-1] + (f"{path[-1]}[{index}]",))
    else:
        yield path, node


def tables(node, path=()):
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from tables(value, path + (key,))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from tables(item, path[:-1] + (f"{path[-1]}[{index}]",))


LEAVES = sorted(leaves(DEFAULT), key=lambda leaf: leaf[0])
TABLES = sorted(tables(DEFAULT))


def key_of(path) -> str:
    return ".".join(path)


def node_at(data, path):
    for part in path:
        if part.endswith("]"):
            name, index = part[:-1].split("[")
            data = data[name][int(index)]
        else:
            data = data[part]
    return data


def toml_string(text: str) -> str:
    escaped = []
    for character in text:
        if character in '"\\':
            escaped.append("\\" + character)
        elif not character.isprintable() or ord(character) < 0x20:
            escaped.append(
                f"\\u{ord(character):04x}"
                if ord(character) < 0x10000
                else f"\\U{ord(character):08x}"
            )
        else:
            escaped.append(character)
    return '"' + "".join(escaped) + '"'


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(value)


def to_text(data, path=()) -> list[str]:
    """TOML for `data`: scalars first, then sub-tables and arrays of tables."""
    lines = [
        f"{key} = {toml_value(value)}"
        for key, value in data.items()
        if not isinstance(value, dict)
        and not (isinstance(value, list) and value and isinstance(value[0], dict))
    ]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key_of(path + (key,))}]"] + to_text(value, path + (key,))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines += ["", f"[[{key_of(path + (key,))}]]"] + to_text(item, path + (key,))
    return lines


def copy(data):
    if isinstance(data, dict):
        return {key: copy(value) for key, value in data.items()}
    if isinstance(data, list):
        return [copy(item) for item in data]
    return data


def wrong_values(default):
    """Values that must be refused for a key whose default is `default`."""
    if isinstance(default, bool):
        return st.sampled_from(["yes", 1, 0.5, [True], {"a": 1}])
    if isinstance(default, (int, float)):
        # The wrong type, or a number no river or dam gauge could mean: every number has a
        # physical range.
        return st.sampled_from(
            [
                "ten",
                True,
                [1],
                {"a": 1},
                -1e9,
                1e9,
                10**400,
                -(10**25),
                1e300,
                math.inf,
                -math.inf,
                math.nan,
            ]
        )
    if isinstance(default, str):
        return st.sampled_from(
            [5, 1.5, False, ["a"], {"a": 1}, "bad\x00nul", "two\nlines", "tab\there", "\x1b[31mred"]
        )
    if isinstance(default, list):  # a list of numbers (sensor.invalid_values)
        return st.sampled_from(["9999", 9999, [math.nan], [1e30], [True], [{"a": 1}]])
    raise TypeError(default)


@st.composite
def bad_configurations(draw):
    data = copy(DEFAULT)
    expected: list[str] = []  # a line of the output must start with each of these
    chosen = draw(
        st.lists(st.sampled_from(LEAVES), min_size=0, max_size=6, unique_by=lambda leaf: leaf[0])
    )
    for path, default in chosen:
        parent = node_at(data, path[:-1])
        parent[path[-1]] = draw(wrong_values(default))
        expected.append(f"{key_of(path)}:")
    for table in draw(st.lists(st.sampled_from(TABLES), max_size=3, unique=True)):
        name = f"bogus_{draw(st.integers(0, 99))}"
        node = node_at(data, table)
        if name not in node:
            node[name] = 1
            expected.append(f"{key_of(table + (name,))}:" if table else f"{name}:")
    levels_touched = any(path[0] == "alarm" and path[1].startswith("levels") for path, _ in chosen)
    if not levels_touched and draw(st.booleans()):
        levels = data["alarm"]["levels"]
        levels[1]["above_m"] = levels[0]["above_m"] - 0.5  # below the level under it
        expected.append("alarm.levels[1].above_m:")
    lines = to_text(data)
    if draw(st.booleans()):
        lines.insert(0, "this line is not TOML")
        expected.append("line 1: not valid TOML")
    elif draw(st.booleans()):
        at = lines.index("[sensor]") + 1
        lines.insert(at, lines[at])  # the first key of [sensor], given twice
        expected.append(f"line {at + 2}: sensor.{lines[at].split(' =')[0]} is given twice")
    return "\n".join(lines) + "\n", expected


def check_config(text: str | bytes) -> tuple[int, list[str]]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        stderr, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            code = cli.main(["check-config", "--config", str(path)])
    return code, stderr.getvalue().splitlines()


def test_the_generator_round_trips_the_default():
    code, problems = check_config("\n".join(to_text(DEFAULT)) + "\n")
    assert (code, problems) == (0, [])


@FUZZ
@given(bad_configurations())
def test_every_planted_problem_is_reported_in_one_run_with_exit_78(case):
    text, expected = case
    code, problems = check_config(text)
    if not expected:
        assert (code, problems) == (0, [])
        return
    assert code == 78
    for start in expected:
        # "key:" also matches "key[0]:" (an item of a list) and a file's "path: line N: ...".
        assert any(
            problem.startswith((start, start[:-1] + "[")) or f": {start}" in problem
            for problem in problems
        ), (start, problems)
    assert all(":" in problem for problem in problems)


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8")))
def test_any_bytes_as_a_configuration_file_get_an_answer_never_a_traceback(raw):
    code, problems = check_config(raw)
    assert code in (0, 78)
    assert (code == 0) == (problems == [])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=4))
def test_any_set_option_gets_an_answer_never_a_traceback(overrides):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(
            ["replay", "/nonexistent.csv"] + [f"--set={override}" for override in overrides]
        )
    assert code in (1, 78), stderr.getvalue()
