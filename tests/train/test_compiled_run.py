"""`bench run --compile`: the run trains with its agent compiled, records the mode with its execution settings, and
logs compile time apart from the training time."""

from bench.jobs import RunDir
from tests.helpers import TINY, bench_cli


def test_a_compiled_run_logs_compile_time_apart(tmp_path):
    result = bench_cli("run", "--algos", "td3", "--envs", "Pendulum", "--seeds", "1", "--suite", "compiled",
                       "--compile", *TINY, results_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    run = RunDir.at(tmp_path, "compiled", "td3", "Pendulum-v1", 0)
    assert run.read_config()["execution"]["compile"] == "default"
    summary = run.read_summary()
    assert summary["status"] == "done" and summary["updates"] == 200
    assert summary["time/compile_s"] > 0
    # Compiling took seconds, more than the 200 tiny updates themselves: it is not in the update time nor the total.
    assert summary["time/update_s"] < summary["time/compile_s"]
    assert summary["time/train_s"] < summary["wall_time_s"] - summary["time/compile_s"] + 1.0
    assert 0 <= summary["time/overhead_frac"] < 1
    assert summary["omp_wait_policy"] == "PASSIVE"  # bench's default reached the run's own process


def test_a_users_openmp_wait_policy_is_kept(tmp_path):
    result = bench_cli("run", "--algos", "td3", "--envs", "Pendulum", "--seeds", "1", "--suite", "mine", *TINY,
                       "--steps", "120", results_dir=tmp_path, env={"OMP_WAIT_POLICY": "ACTIVE"})
    assert result.returncode == 0, result.stderr
    assert RunDir.at(tmp_path, "mine", "td3", "Pendulum-v1", 0).read_summary()["omp_wait_policy"] == "ACTIVE"


def test_an_unknown_compile_mode_is_one_line(tmp_path):
    result = bench_cli("run", "--algos", "td3", "--envs", "Pendulum", "--compile", "fastest", *TINY,
                       results_dir=tmp_path)
    assert result.returncode != 0
    assert "fastest" in result.stderr and "reduce-overhead" in result.stderr and "Traceback" not in result.stderr
