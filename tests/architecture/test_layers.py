"""The floor plan of bench/ (bench/__init__.py, docs/architecture.md) holds: every import goes to the same wing or
one listed before it, algorithms/ imports nothing of bench/, the top level holds only the core and the wings, and
the run directory's layout is known to RunDir alone."""

import ast
import re
from pathlib import Path

import pytest

import bench
from tests.helpers import ROOT

BENCH = ROOT / "bench"


def wing_of(module: str) -> str:
    """``bench.plan.expand`` -> plan; ``bench.jobs`` and ``bench`` -> core; ``bench.cli`` -> cli."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in bench.CORE_MODULES:
        return "core"
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth (imports inside functions count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from bench import plugins` imports the module bench.plugins, not just the package
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if (BENCH / alias.name).is_dir() or (BENCH / f"{alias.name}.py").exists()
                      if node.module == "bench"]
    return found


def test_every_import_in_bench_goes_down_the_wings():
    rank = {wing: index for index, wing in enumerate(bench.WINGS)}
    violations = []
    for path in sorted(BENCH.rglob("*.py")):
        importer = wing_of(module_name(path))
        assert importer in rank, f"{path}: wing {importer!r} is not in bench.WINGS {bench.WINGS}"
        for line, module in imported_modules(path):
            if module.split(".")[0] != "bench":
                continue
            target = wing_of(module)
            if rank[target] > rank[importer]:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({importer}) imports {module} ({target})")
    assert not violations, "imports against the wing order:\n" + "\n".join(violations)


def test_algorithms_never_import_bench():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in sorted((ROOT / "algorithms").rglob("*.py"))
                 for line, module in imported_modules(path) if module.split(".")[0] == "bench"]
    assert not offenders, offenders


def test_the_top_level_of_bench_holds_the_core_and_the_wings():
    entries = {path.name for path in BENCH.iterdir() if path.name != "__pycache__"}
    expected = {"__init__.py", "cli.py", "data", *(f"{name}.py" for name in bench.CORE_MODULES),
                *(wing for wing in bench.WINGS if wing not in ("core", "cli"))}
    assert entries == expected


RUN_FILES = ("config.yaml", "manifest.json", "train.csv", "eval.csv", "summary.json", "error.txt", "attempts.json",
             "run.log", "checkpoint.json", "last.pt", "prev.pt", "sweep.yaml")


@pytest.mark.parametrize("path", sorted(BENCH.rglob("*.py")), ids=lambda path: str(path.relative_to(BENCH)))
def test_only_rundir_knows_the_run_directory_layout(path):
    """No `parents[` arithmetic and no run-file name in a string literal outside bench/jobs.py (docstrings and
    comments may name files for the reader)."""
    if path == BENCH / "jobs.py":
        return
    source = path.read_text()
    assert "parents[" not in source
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    literals = [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings]
    pattern = re.compile("|".join(re.escape(name) for name in RUN_FILES))
    named = [f"line {node.lineno}: {node.value!r}" for node in literals if pattern.search(node.value)]
    assert not named, f"{path.relative_to(ROOT)} names run files outside RunDir: {named}"
