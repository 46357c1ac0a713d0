"""English and Bahasa Indonesia: the catalogue is complete, used, compiled, and chosen by
--lang or the environment; machine output stays as it is."""

from __future__ import annotations

import ast
import json
import re

from agent import i18n
from tests.conftest import ROOT, calm_config, run_cli

PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def messages_in_code() -> dict[str, str]:
    """Every literal passed to _() or N_() in the package, with where it is."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_", "N_")
                and node.args
            ):
                argument = node.args[0]
                # _(name) translates a message marked N_() where it was defined.
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    found.setdefault(argument.value, f"{path.name}:{node.lineno}")
    return found


def test_every_message_is_translated_and_every_translation_is_used():
    po, _ = i18n.catalogue_paths("id")
    catalogue = {k: v for k, v in i18n.read_po(po).items() if k}
    code = messages_in_code()
    untranslated = {m: where for m, where in code.items() if not catalogue.get(m)}
    unused = sorted(set(catalogue) - set(code))
    assert untranslated == {} and unused == []


def test_a_translation_keeps_every_placeholder():
    po, _ = i18n.catalogue_paths("id")
    for message, translation in i18n.read_po(po).items():
        if message:
            assert sorted(PLACEHOLDER.findall(translation)) == sorted(
                PLACEHOLDER.findall(message)
            ), message


def test_the_compiled_catalogue_is_the_source_compiled():
    po, mo = i18n.catalogue_paths("id")
    assert mo.read_bytes() == i18n.compile_mo(i18n.read_po(po)), "run: python -m agent.i18n compile"


def test_the_language_comes_from_lang_or_the_environment_and_json_is_never_translated(
    tmp_path,
):
    english = run_cli("--help", env={"LANG": "en_US.UTF-8", "LANGUAGE": ""})
    assert "Flood early-warning water-level gauge agent." in english.stdout
    indonesian = run_cli("--help", env={"LANG": "id_ID.UTF-8", "LANGUAGE": ""})
    assert "Agen pos duga air untuk peringatan dini banjir." in indonesian.stdout
    chosen = run_cli(
        "--lang",
        "id",
        "siren-test",
        "--config",
        calm_config(tmp_path),
        input="n\n",
        env={"LANG": "en_US.UTF-8"},
    )
    assert chosen.returncode == 1 and "Mulai uji? [y/N] tidak ada yang dibunyikan" in chosen.stdout
    machine = run_cli(
        "--lang", "id", "read", "--config", calm_config(tmp_path), "--count", "1", "--json"
    )
    assert set(json.loads(machine.stdout)) >= {"time", "raw", "level_m", "ok", "reason"}
