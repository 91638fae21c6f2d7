"""docs/configuration.md's table of every config field is generated from the code (scripts/config_table.py):
it must list every field of every built-in algorithm with its current default."""

from __future__ import annotations

import dataclasses
import importlib.util
import re

import algorithms
from algorithms import base

from tests.helpers import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts" / "config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_doc_table_is_up_to_date():
    script = _script()
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert script.replace_block(text, script.render()) == text, \
        "docs/configuration.md is out of date: run python scripts/config_table.py --write"


def test_table_rows_match_the_resolved_defaults():
    """Independent of the renderer: parse the doc's rows back and compare with resolve_config."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    sections = re.split(r"^### `(\w+)`$", text, flags=re.M)
    tables = {sections[i]: sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    for algo in algorithms.available_algorithms():
        if not base.get_algorithm(algo).__module__.startswith("algorithms."):
            continue  # a test plugin registered by another test
        rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", tables[algo], flags=re.M))
        config = base.resolve_config(algo)
        assert list(rows) == [field.name for field in dataclasses.fields(config)], algo
        for key, shown in rows.items():
            value = getattr(config, key)
            if isinstance(value, tuple):
                assert [int(v) for v in shown.strip(" []").split(",")] == list(value), (algo, key)
            elif isinstance(value, bool):
                assert shown.strip() == str(value).lower(), (algo, key)
            elif value is None:
                assert shown.strip() == "null", (algo, key)
            elif isinstance(value, (int, float)):
                assert float(shown) == value, (algo, key)
            else:
                assert shown.strip() == value, (algo, key)


def test_check_mode_detects_a_stale_page(tmp_path, monkeypatch):
    script = _script()
    stale = (ROOT / "docs" / "configuration.md").read_text().replace("| `tau` | 0.005 |", "| `tau` | 0.5 |", 1)
    page = tmp_path / "configuration.md"
    page.write_text(stale)
    monkeypatch.setattr(script, "DOC", page)
    assert script.main(["--check"]) == 1
    assert script.main(["--write"]) == 0
    assert script.main(["--check"]) == 0
