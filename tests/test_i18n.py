"""English and Bahasa Indonesia: the catalogue is complete, used, compiled, and chosen by
--lang or the environment; machine output stays as it is."""

from __future__ import annotations

import ast
import json
import re

from agent import i18n
from tests.conftest import ROOT, calm_config, run_cli

# str.format's {names} and the %-style ones argparse uses.
PLACEHOLDER = re.compile(r"\{[^{}]*\}|%\(\w+\)[a-z]|%[a-z]")


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


# Words of the English problem messages; an Indonesian line holding one was left untranslated.
# (tomllib's own description of a syntax error stays English inside the Indonesian line.)
ENGLISH_WORDS = re.compile(
    r"\b(must|unknown key|is already|did you mean|would send|given twice|not valid)\b"
)


def test_configuration_problems_are_indonesian_and_keep_their_keys(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                "oops =",
                "[station]",
                'id = "bad id!"',
                "[sensor]",
                "interval_s = 99999",
                'burst = "five"',
                "intervall_s = 5",
                "[sensor.simulated]",
                "spike_probability = 2",
                "[sensor.temperature]",
                'source = "lm35"',
                "[filter]",
                "window = 0",
                "[outputs]",
                "siren_pin = 22",
                "[uplink]",
                'url = "http://example.org/x"',
                "[storage]",
                'state_dir = "relative"',
                "[[alarm.levels]]",
                'name = "siaga"',
                "above_m = 8.0",
                "[[alarm.levels]]",
                'name = "siaga"',
                "above_m = 7.0",
            ]
        ),
        encoding="utf-8",
    )
    english = run_cli("--lang", "en", "check-config", "--config", str(config))
    indonesian = run_cli("--lang", "id", "check-config", "--config", str(config))
    assert english.returncode == indonesian.returncode == 78
    english_lines = english.stderr.splitlines()
    indonesian_lines = indonesian.stderr.splitlines()
    assert len(english_lines) == len(indonesian_lines) >= 11
    for in_english, in_indonesian in zip(english_lines, indonesian_lines, strict=True):
        # The key (or file) a line is about is not translated: a technician finds it in the file.
        assert in_english.split(": ", 1)[0] == in_indonesian.split(": ", 1)[0]
        assert ENGLISH_WORDS.search(in_english), in_english
        assert not ENGLISH_WORDS.search(in_indonesian), in_indonesian
    assert "sensor.interval_s: 99999 harus dari 0.01 sampai 3600 detik" in indonesian_lines
    assert (
        "sensor.simulated.spike_probability: 2 harus berupa peluang dari 0 sampai 1"
        in indonesian_lines
    )
    assert "sensor.intervall_s: kunci tidak dikenal (maksudnya 'interval_s'?)" in indonesian_lines
    assert "outputs.green_led_pin: 22 sudah dipakai oleh outputs.siren_pin" in indonesian_lines
    assert (
        "sensor.temperature.source: 'lm35' harus salah satu dari 'fixed', 'ds18b20'"
        in indonesian_lines
    )


def test_start_up_errors_are_indonesian(tmp_path):
    missing = run_cli("--lang", "id", "run", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 78
    assert missing.stderr.strip() == (
        f"{tmp_path / 'absent.toml'}: berkas tidak ada (berikan --config PATH, atau buat"
        " berkasnya dari templat config.toml)"
    )
    directory = run_cli("--lang", "id", "replay", str(tmp_path))
    assert directory.returncode == 1
    assert directory.stderr.strip() == f"gauge-agent: {tmp_path}: ini direktori, bukan berkas"


def test_replay_speaks_indonesian_on_stderr_and_writes_the_same_events(tmp_path):
    recording = tmp_path / "rise.csv"
    rows = [f"{60 * i},{7.0 + 0.01 * i:.3f}" for i in range(200)]
    recording.write_text("time,level\n" + "\n".join(rows) + "\n", encoding="utf-8")
    english = run_cli("--lang", "en", "replay", str(recording))
    indonesian = run_cli("--lang", "id", "replay", str(recording))
    assert english.returncode == indonesian.returncode == 0
    assert indonesian.stdout == english.stdout and '"state": "awas"' in english.stdout
    assert english.stderr.startswith("replay: 200 rows, 200 samples (")
    assert indonesian.stderr.startswith("replay: 200 baris, 200 sampel (")
    assert "puncak 8.970 m pada" in indonesian.stderr and "awas 0.8 jam" in indonesian.stderr


def test_argparse_speaks_the_same_language_as_the_help_it_frames():
    indonesian = run_cli("--lang", "id", "replay", "--unit", "yd", "x.csv")
    assert indonesian.returncode == 2
    assert indonesian.stderr.startswith("cara pakai: gauge-agent replay [-h]")
    assert indonesian.stderr.endswith(
        "gauge-agent replay: kesalahan: argumen --unit: pilihan tidak sah: 'yd'"
        " (pilih dari 'cm', 'ft', 'm', 'mm')\n"
    )
    help_text = run_cli("--lang", "id", "status", "--help").stdout
    assert "opsi:" in help_text and "tampilkan bantuan ini lalu keluar" in help_text
    english = run_cli("--lang", "en", "replay").stderr
    assert english.endswith("error: the following arguments are required: CSV\n")
