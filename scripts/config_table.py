"""Print the reference tables of docs/configuration.md: every algorithm's config fields with their defaults, the
per-environment blocks of algorithms/configs/<algo>.yaml, and what the CPU overlay files change.

    python scripts/config_table.py            # the Markdown that goes between the config-table markers
    python scripts/config_table.py --check    # exit 1 if docs/configuration.md is out of date

Defaults come from the code (dataclass defaults, then the YAML ``default`` block), and so do the meanings: the help
text each config field is declared with (``algorithms.config.field``, ``algorithms.fields.shared``).
tests/docs/test_config_table.py runs the check, so a changed default or a new field fails CI until the page is
regenerated (``python scripts/config_table.py --write``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import algorithms  # noqa: E402
from algorithms import base, config as cfg  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
BEGIN, END = "<!-- config-table:begin (scripts/config_table.py) -->", "<!-- config-table:end -->"
OVERLAYS = ("cpu-smoke.yaml", "small-nets.yaml")


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"  # as in YAML, where such a field is set
    return f"{value:g}" if isinstance(value, float) else str(value)


def meaning(algo: str, key: str) -> str:
    text = cfg.meaning(base.get_algorithm(algo).Config, key)
    if text is None:
        raise KeyError(f"{algo}.{key} has no meaning: declare it with algorithms.config.field(default, meaning)")
    return text


def algorithm_table(algo: str) -> list[str]:
    config = base.resolve_config(algo)
    lines = [f"### `{algo}`", "", "| field | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(config):
        lines.append(f"| `{field.name}` | {_value(getattr(config, field.name))} | {meaning(algo, field.name)} |")
    blocks = {name: values for name, values in cfg.read_yaml(base.config_file(algo)).items() if name != "default"}
    if blocks:
        lines.append("")
        lines.append(f"Per-environment blocks in `algorithms/configs/{algo}.yaml`: "
                     + "; ".join(f"`{name}`: " + ", ".join(f"{k}={_value(v)}" for k, v in values.items())
                                 for name, values in blocks.items()) + ".")
    return lines


def overlay_table() -> list[str]:
    lines = ["| file | algorithm | field: default -> overlay |", "|---|---|---|"]
    for name in OVERLAYS:
        for algo, values in cfg.read_yaml(base.CONFIG_DIR / name).items():
            config = base.resolve_config(algo)
            changes = ", ".join(f"{key}: {_value(getattr(config, key))} -> {_value(value)}" for key, value in values.items())
            lines.append(f"| `{name}` | `{algo}` | {changes} |")
    return lines


def render() -> str:
    lines = [BEGIN, ""]
    for algo in algorithms.available_algorithms():
        if base.get_algorithm(algo).__module__.startswith("algorithms."):
            lines += algorithm_table(algo) + [""]
    lines += ["### The CPU overlays", ""] + overlay_table() + ["", END]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[end:]


def main(argv: list[str]) -> int:
    block = render()
    if "--check" in argv or "--write" in argv:
        text = DOC.read_text()
        updated = replace_block(text, block)
        if "--write" in argv:
            DOC.write_text(updated)
            return 0
        if updated != text:
            print(f"{DOC} is out of date: run python scripts/config_table.py --write", file=sys.stderr)
            return 1
        return 0
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
