"""docs/adding-an-algorithm.md, followed literally: the files it tells the reader to save (marked
``<!-- file: NAME -->``) are written to a fresh folder and the shell blocks it tells them to run (marked
``<!-- run -->``) run there, in order, through a ``bench`` executable made like pip's console script (so the current
directory is not on the Python path, as for a user), with this checkout first on PYTHONPATH."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import ROOT as REPO
DOC = REPO / "docs" / "adding-an-algorithm.md"
BLOCK = re.compile(r"<!-- (?:file: (?P<file>[\w.\-]+)|(?P<run>run)) -->\n```\w*\n(?P<body>.*?)^```", re.S | re.M)
# pip's console-script template (what `pip install -e .` writes as `bench`): sys.path[0] is the script's folder.
CONSOLE_SCRIPT = "#!{python}\nimport sys\nfrom bench.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"


def page_blocks() -> tuple[dict[str, str], list[str]]:
    files, commands = {}, []
    for match in BLOCK.finditer(DOC.read_text()):
        if match["file"]:
            files[match["file"]] = match["body"]
        else:
            commands.append(match["body"])
    return files, commands


def test_the_page_marks_the_files_and_commands_to_follow():
    files, commands = page_blocks()
    assert {"my_ddpg.py", "my_ddpg.yaml"} <= set(files)
    firsts = [block.split()[:2] for block in commands]
    assert firsts == [["python", "-c"], ["bench", "list"], ["bench", "run"], ["bench", "report"]], firsts
    assert "check_agent('my_ddpg')" in commands[0]
    assert all("--plugin my_ddpg" in block for block in commands[1:3])


def user_shell(tmp_path: Path) -> dict:
    """Environment of a user shell: `bench` is a console script running this checkout; no results/plugin variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bench").write_text(CONSOLE_SCRIPT.format(python=sys.executable))
    (bin_dir / "bench").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("BENCH_RESULTS_DIR", "BENCH_PLUGINS")}
    env.update(PYTHONPATH=str(REPO), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return env


def test_following_the_page_registers_runs_and_reports_the_example(tmp_path):
    files, commands = page_blocks()
    work = tmp_path / "work"
    work.mkdir()
    for name, text in files.items():
        (work / name).write_text(text)
    env = user_shell(tmp_path)

    outputs = []
    for block in commands:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"{block}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        outputs.append(result.stdout)
    check, listing, run, report = outputs

    assert "my_ddpg: 4 interface checks passed" in check
    cls_description = re.search(r'description = "([^"]+)"', files["my_ddpg.py"])[1]
    assert re.search(rf"my_ddpg\s+│\s+{re.escape(cls_description[:40])}", listing), listing

    suites = [path for path in (work / "results").iterdir() if path.is_dir()]
    assert len(suites) == 1, suites
    suite = suites[0]
    run_dirs = sorted(suite.glob("*/*/seed=*"))
    algos = {path.parts[-3] for path in run_dirs}
    assert algos == {"my_ddpg", "sac"}, run_dirs
    yaml_defaults = yaml.safe_load(files["my_ddpg.yaml"])
    for run_dir in run_dirs:
        assert (run_dir / "DONE").exists(), f"{run_dir} not DONE: {list(run_dir.iterdir())}"
        evals = pd.read_csv(run_dir / "eval.csv")
        assert len(evals) >= 2 and math.isfinite(evals["eval/return_mean"].iloc[-1]), run_dir
        if run_dir.parts[-3] == "my_ddpg":  # the YAML next to the module gave the env block's values
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            family = config["env_id"].rsplit("-v", 1)[0]
            for key, value in (yaml_defaults.get(family) or {}).items():
                assert config["agent"][key] == value, (key, config["agent"][key], value)

    report_dir = suite / "report"
    markdown = (report_dir / "report.md").read_text()
    assert "my_ddpg" in markdown and "sac" in markdown
    final = pd.read_csv(report_dir / "final_returns.csv")
    assert {"my_ddpg", "sac"} <= set(final.astype(str).to_numpy().ravel()) | set(final.columns), final
    runs = pd.read_parquet(report_dir / "runs.parquet")
    assert set(runs["algo"]) == {"my_ddpg", "sac"}
    assert runs.groupby("algo").size().nunique() == 1  # the same seeds for both


@pytest.mark.parametrize("entry", ["my_ddpg", "./my_ddpg.py"])
def test_a_missing_plugin_is_named_with_the_folder_it_was_looked_for_in(tmp_path, entry):
    env = user_shell(tmp_path)
    result = subprocess.run(["bench", "list", "--plugin", entry], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "my_ddpg" in result.stderr and str(tmp_path) in result.stderr, result.stderr


def test_registry_rules_the_page_states(monkeypatch, tmp_path):
    """Names are lower case; a plugin's defaults_file supplies YAML defaults by env block, and must exist."""
    import algorithms
    from algorithms import base
    from algorithms.sac import SAC

    with pytest.raises(ValueError, match="lower case"):
        algorithms.register(type("Upper", (SAC,), {"name": "My_SAC"}))
    assert "My_SAC" not in base._REGISTRY and "my_sac" not in base._REGISTRY

    defaults = tmp_path / "doc_sac.yaml"
    defaults.write_text("default: {tau: 0.02}\nHopper: {gamma: 0.9}\nHopper-v4: {gamma: 0.8}\n")
    cls = type("DocSAC", (SAC,), {"name": "doc_sac", "defaults_file": defaults})
    monkeypatch.setitem(base._REGISTRY, "doc_sac", cls)  # removed again after the test
    default = algorithms.resolve_config("doc_sac", None)
    assert (default.tau, default.gamma) == (0.02, 0.99)
    assert algorithms.resolve_config("doc_sac", "Hopper-v5").gamma == 0.9
    assert algorithms.resolve_config("doc_sac", "Hopper-v4", {"tau": 0.5}).gamma == 0.8
    assert algorithms.resolve_config("doc_sac", "Hopper-v4", {"tau": 0.5}).tau == 0.5
    monkeypatch.setattr(cls, "defaults_file", tmp_path / "missing.yaml")
    with pytest.raises(algorithms.ConfigError, match="missing.yaml does not exist"):
        algorithms.resolve_config("doc_sac", None)
