"""notebooks/compare.ipynb runs top to bottom on the suite the README's default job writes (tiny budget here).

The README's first command is read from README.md itself, so the notebook is tested against the job users run;
only the training budget is cut (later flags win in argparse)."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.helpers import bench_env

from tests.helpers import ROOT
TINY_BUDGET = ["--steps", "300", "--warmup", "100", "--eval-every", "150", "--eval-episodes", "2",
               "-o", "protocol.log_every=100", "-o", "batch_size=32", "--threads", "1", "--workers", "2"]


def readme_default_job() -> list[list[str]]:
    """The `bench ...` commands of the README's first line (after the install), as argument lists."""
    first_block = re.search(r"```bash\n(.*?)\n", (ROOT / "README.md").read_text()).group(1)
    commands = [shlex.split(part) for part in first_block.split("&&")]
    # Files the README names relative to the checkout (the --config overlays) stay valid from another folder.
    bench = [[str(ROOT / arg) if (ROOT / arg).is_file() else arg for arg in command[1:]]
             for command in commands if command[0] == "bench"]
    assert [command[0] for command in bench] == ["run", "report"], first_block
    return bench


def test_compare_notebook_runs_on_the_readme_default_job(tmp_path, monkeypatch):
    run, report = readme_default_job()
    env = bench_env(tmp_path / "results")
    for args in (run + TINY_BUDGET, report):
        done = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"bench {' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    suite = tmp_path / "results" / "quickstart"
    assert (suite / "report" / "aggregates.csv").exists()

    # The notebook sits in notebooks/ next to results/, as in a checkout; its default suite is ../results/quickstart.
    (tmp_path / "notebooks").mkdir()
    notebook_path = shutil.copy(ROOT / "notebooks" / "compare.ipynb", tmp_path / "notebooks")
    notebook = nbformat.read(notebook_path, as_version=4)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout's bench
    for variable in ("BENCH_RESULTS_DIR", "BENCH_NOTEBOOK_SUITE"):
        monkeypatch.delenv(variable, raising=False)
    # A failing cell raises CellExecutionError with the cell's traceback: the test (and CI) fails.
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert f"matches {Path('..') / 'results' / 'quickstart' / 'report' / 'aggregates.csv'}" in text
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 10, f"{len(images)} figures displayed"
    assert (suite / "notebook" / "learning_curves.png").stat().st_size > 10_000
