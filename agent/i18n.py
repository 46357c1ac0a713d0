"""English and Bahasa Indonesia for what people read (help, prompts, messages of the technician
commands), through the standard library's gettext. Machine output (--json, replay events, the
upstream) is never translated.

The language is `--lang` if given, else the environment as gettext reads it (LANGUAGE, LC_ALL,
LC_MESSAGES, LANG: `LANG=id_ID.UTF-8` gives Indonesian); anything without a catalogue is English.
The catalogue is agent/locale/id/LC_MESSAGES/gauge-agent.po, compiled to the .mo beside it by
`python -m agent.i18n compile` (tests/test_i18n.py fails on a stale .mo, a message without a
translation, or a translation nothing uses).

Write a message as `_("text with {names}")` where it is shown, or `N_("...")` where it must be
defined before the language is known (a command's HELP), and `_()` it when shown.
"""

from __future__ import annotations

import argparse
import ast
import gettext
import struct
import sys
from pathlib import Path

DOMAIN = "gauge-agent"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "id")

_translation: gettext.NullTranslations = gettext.NullTranslations()


def use_language(language: str | None) -> None:
    """`language` ("en", "id"), or None for the environment's."""
    global _translation
    _translation = gettext.translation(
        DOMAIN, LOCALE_DIR, languages=[language] if language else None, fallback=True
    )
    # argparse's own words ("usage:", "options", its errors) come through the module-level
    # gettext it imported as `_`; pointed at this catalogue, --help is in one language.
    argparse._ = _  # type: ignore[attr-defined]


def _(message: str) -> str:
    return _translation.gettext(message)


def N_(message: str) -> str:
    """Marks a message for the catalogue without translating it yet."""
    return message


# What argparse says to a person, in its own words (Python 3.11-3.13): translated here because
# they frame every --help and every usage error. Its messages for mistakes in our own parser
# definitions are left out: no user meets them.
ARGPARSE_MESSAGES = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"),
    N_("expected one argument"),
    N_("expected at most one argument"),
    N_("expected at least one argument"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("not allowed with argument %s"),
    N_("one of the arguments %s is required"),
    N_("ignored explicit argument %r"),
)


# -- the catalogue: .po in, .mo out (what msgfmt does, for the few features used here) --------


def read_po(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a .po file (no plurals or contexts: none are used)."""
    entries: dict[str, str] = {}
    key: str | None = None
    current: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = line.strip()
        if line.startswith("msgid "):
            if "msgid" in current:
                entries[current["msgid"]] = current.get("msgstr", "")
            current, key = {"msgid": ast.literal_eval(line[6:])}, "msgid"
        elif line.startswith("msgstr "):
            current["msgstr"], key = ast.literal_eval(line[7:]), "msgstr"
        elif line.startswith('"') and key is not None:
            current[key] += ast.literal_eval(line)
        elif not line or line.startswith("#"):
            key = None if not line else key
    if "msgid" in current:
        entries[current["msgid"]] = current.get("msgstr", "")
    return entries


def compile_mo(entries: dict[str, str]) -> bytes:
    """The GNU .mo format: header, two sorted tables of (length, offset), then the strings."""
    pairs = sorted((k.encode(), v.encode()) for k, v in entries.items() if v)
    count = len(pairs)
    header_size = 7 * 4
    ids_start = header_size
    strs_start = ids_start + count * 8
    data_start = strs_start + count * 8
    ids, strs, data = b"", b"", b""
    for key, _value in pairs:
        ids += struct.pack("<II", len(key), data_start + len(data))
        data += key + b"\0"
    for _key, value in pairs:
        strs += struct.pack("<II", len(value), data_start + len(data))
        data += value + b"\0"
    header = struct.pack("<IIIIIII", 0x950412DE, 0, count, ids_start, strs_start, 0, 0)
    return header + ids + strs + data


def catalogue_paths(language: str) -> tuple[Path, Path]:
    base = LOCALE_DIR / language / "LC_MESSAGES" / DOMAIN
    return base.with_suffix(".po"), base.with_suffix(".mo")


if __name__ == "__main__":
    if sys.argv[1:] != ["compile"]:
        sys.exit("usage: python -m agent.i18n compile")
    for language in LANGUAGES[1:]:
        po, mo = catalogue_paths(language)
        mo.write_bytes(compile_mo(read_po(po)))
        print(f"{po} -> {mo}")
