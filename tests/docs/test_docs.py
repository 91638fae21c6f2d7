"""The documentation cannot rot silently: relative links resolve, and every flag a `bench` command line in the
docs uses is a flag of that subcommand."""

import argparse
import json
import re
from pathlib import Path

import pytest

from bench.cli import build_parser

from tests.helpers import ROOT
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "notebooks").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```([^\n]*)\n(.*?)```", re.S)
SHELL = {"", "bash", "sh", "console", "shell"}
ANY_FENCE = re.compile(r"```.*?```", re.S)


def markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
    return path.read_text()


def relative_links(path: Path) -> list[str]:
    return [link for link in LINK.findall(ANY_FENCE.sub("", markdown_of(path))) if not re.match(r"[a-z]+:", link)]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", ANY_FENCE.sub("", markdown_of(path)), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def broken_links(page: Path) -> list[str]:
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target) if target else page
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix in (".md", ".ipynb") and anchor not in anchors(path):
            broken.append(f"{link} (no such heading)")
    return broken


@pytest.mark.parametrize("page", PAGES + sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "b.md").write_text("# Speed: SAC (issue 2)\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#speed-sac-issue-2) [gone](c.md) [bad](b.md#speed) [self](#top)\n# Top\n")
    assert broken_links(page) == ["c.md", "b.md#speed (no such heading)"]


def subcommand_flags() -> dict[str, set[str]]:
    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return {name: {flag for action in parser._actions for flag in action.option_strings}
            for name, parser in subparsers.choices.items()}


def bench_lines(text: str) -> list[str]:
    """`bench <command> ...` lines of the fenced shell blocks, continuation lines joined, comments cut."""
    lines = []
    for language, block in FENCE.findall(text):
        if language.strip() not in SHELL:
            continue
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            for part in line.split("#")[0].split("&&"):
                part = part.strip()
                part = re.sub(r"^([A-Z_]+=\S+\s+)+", "", part)  # leading VAR=value assignments
                if re.match(r"bench [a-z]+(\s|$)", part):  # a command, not output such as "bench run: summary"
                    lines.append(" ".join(part.split()))
    return lines


def flag_problems(text: str, flags: dict[str, set[str]]) -> list[str]:
    problems = []
    for line in bench_lines(text):
        words = line.split()
        command = words[1] if len(words) > 1 else ""
        if command not in flags:
            problems.append(f"{line!r}: no subcommand {command!r}")
            continue
        used = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(words[2:])))
        problems += [f"{line!r}: {flag} is not a flag of `bench {command}`" for flag in sorted(used - flags[command])]
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bench_command_lines_use_existing_flags(page):
    problems = flag_problems(page.read_text(), subcommand_flags())
    assert not problems, "\n".join(problems)


def test_the_flag_check_catches_a_misspelt_flag_and_an_unknown_subcommand():
    flags = subcommand_flags()
    text = "```bash\nbench run --algos sac \\\n  --sedes 3   # typo\nX=1 bench reprot results/a\n```\n"
    problems = flag_problems(text, flags)
    assert len(problems) == 2 and "--sedes" in problems[0] and "reprot" in problems[1]
    assert not flag_problems("```bash\nbench run --algos sac --seeds 3 && bench report results/x --final\n```", flags)
    after_yaml = "```yaml\nseeds: 3\n```\n\n```bash\nbench run --sedes 3\n```\n"  # blocks of other languages
    assert len(flag_problems(after_yaml, flags)) == 1                             # do not shift the pairing
