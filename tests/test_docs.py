"""The developer documentation says what the code does."""

from __future__ import annotations

import re

from agent.reasons import Reason
from tests.conftest import ROOT


def test_every_reason_has_a_row_in_the_upstream_docs_and_every_row_is_a_reason():
    text = (ROOT / "docs" / "upstream.md").read_text()
    section = text.split("#### Reasons", 1)[1].split("\n### ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert len(documented) == len(set(documented))
    assert set(documented) == {reason.value for reason in Reason}


def test_the_reference_receiver_accepts_exactly_the_event_kinds_the_docs_list():
    from agent.receiver import EVENT_KINDS

    text = (ROOT / "docs" / "upstream.md").read_text()
    table = text.split("### `event`", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)) - {"kind"}
    assert documented == EVENT_KINDS
