"""Several runs on one machine: ``--devices`` spreads the local executor's runs round-robin, a profile's
``runs_per_task`` packs runs into one array task (threads split, GPUs shared), each run in its own process so that
one dying run leaves its siblings alone. The real-SLURM round trip (requeue of a packed task) is in test_slurm.py."""

import dataclasses
import json

import pytest
import yaml

from algorithms.config import ConfigError
from bench.launch.packing import pack, spread_over_devices, task_devices
from bench.launch.resolve import resolve_placement
from tests.helpers import TINY, bench_cli, plan_jobs


@pytest.fixture(scope="module")
def five_jobs(tmp_path_factory):
    return plan_jobs(["sac"], ["Pendulum"], range(5), suite="p", results_root=tmp_path_factory.mktemp("plan"))


def test_runs_go_round_robin_over_the_devices_and_the_gpus_of_a_task(five_jobs):
    spread = spread_over_devices(five_jobs, ["cuda:0", "cuda:1"])
    assert [job.device for job in spread] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert [job.seed for job in spread] == [0, 1, 2, 3, 4]
    assert spread_over_devices(five_jobs, ()) == five_jobs
    groups = pack(five_jobs, 2)
    assert [[job.seed for job in group] for group in groups] == [[0, 1], [2, 3], [4]]
    on_cuda = [dataclasses.replace(job, device="cuda") for job in groups[0]]
    assert [job.device for job in task_devices(on_cuda, gpus=2)] == ["cuda:0", "cuda:1"]
    assert [job.device for job in task_devices(on_cuda, gpus=1)] == ["cuda", "cuda"]
    assert [job.device for job in task_devices(groups[0], gpus=2)] == ["cpu", "cpu"]


def write_profile(path, **settings):
    path.write_text(yaml.safe_dump({"partition": "debug", **settings}))
    return path


def test_a_task_splits_its_cpus_between_its_runs(tmp_path):
    profile = write_profile(tmp_path / "gpu.yaml", cpus_per_task=8, gpus_per_node=1, runs_per_task=4)
    packed = resolve_placement("slurm", profile)
    assert (packed.runs_per_task, packed.threads, packed.device) == (4, 2, "cuda")
    flag = resolve_placement("slurm", profile, runs_per_task=8)  # --runs-per-task replaces the profile's
    assert (flag.runs_per_task, flag.threads, flag.profile.runs_per_task) == (8, 1, 8)
    assert resolve_placement("slurm", profile, threads=3).threads == 3
    tuning = resolve_placement("slurm", profile, runs_per_task=1)  # bench tune: one worker per task
    assert (tuning.runs_per_task, tuning.threads) == (1, 8)


@pytest.mark.parametrize("call, message", [
    (lambda p: resolve_placement("slurm", p, runs_per_task=9),
     "--runs-per-task 9: runs_per_task (9) must be <= cpus_per_task (8)"),
    (lambda p: resolve_placement("local", None, runs_per_task=2), "--runs-per-task packs runs into the array tasks"),
    (lambda p: resolve_placement("slurm", p, devices="cuda:0"), "--devices spreads the runs of the local executor"),
    (lambda p: resolve_placement("local", None, device="cpu", devices="cpu"), "give one of them"),
    (lambda p: resolve_placement("local", None, devices="cpu,cuda:7"),
     "--devices: 'cuda:7' does not exist here; valid devices: cpu"),
])
def test_impossible_packing_is_refused_with_the_valid_choices(tmp_path, call, message):
    profile = write_profile(tmp_path / "cpu.yaml", cpus_per_task=8)
    with pytest.raises(ConfigError) as error:
        call(profile)
    assert message in str(error.value)


def test_a_device_that_does_not_exist_is_one_line(results_dir):
    result = bench_cli("run", "--algos", "sac", "--envs", "Pendulum", *TINY, "--devices", "cpu,cuda:3",
                       results_dir=results_dir)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --devices: 'cuda:3' does not exist here; valid devices: cpu"]


def test_a_packed_task_runs_its_runs_in_separate_processes_so_one_dying_run_spares_the_other(results_dir):
    """The debug executor runs the very task a SLURM array task runs: here 2 runs in one task, one of them
    SIGKILLed at its first update."""
    result = bench_cli("run", "--algos", "sac,dying_sac", "--envs", "Pendulum", "--suite", "pk", *TINY,
                       "--executor", "debug", "--runs-per-task", "2", "--plugin", "dying_agent",
                       results_dir=results_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 runs (2 to do) 2 at a time, each in its own process" in result.stdout
    suite = results_dir / "pk"
    survivor = json.loads((suite / "sac" / "Pendulum-v1" / "seed=0" / "summary.json").read_text())
    assert survivor["status"] == "done" and survivor["total_steps"] == 300 and survivor["torch_threads"] == 1
    died = suite / "dying_sac" / "Pendulum-v1" / "seed=0"
    assert "worker process died" in (died / "error.txt").read_text() and not (died / "DONE").exists()
    assert "1 run(s) failed" in result.stdout
    placement = yaml.safe_load((suite / "sweep.yaml").read_text())["placement"]
    assert placement == {"executor": "debug", "device": "cpu", "threads_per_run": 1, "runs_per_task": 2}


def test_every_run_of_a_packed_task_is_tied_to_the_task_for_bench_status(tmp_path):
    from bench.jobs import SuiteDir
    from bench.launch.slurm import SUBMISSIONS_FILE, latest_tasks

    suite = SuiteDir(tmp_path / "s")
    suite.slurm_dir.mkdir(parents=True)
    lines = [{"job_name": "bench-s", "tasks": {"7_0": "sac/Pendulum-v1/seed=0"}},  # a submission before packing
             {"job_name": "bench-s", "tasks": {"9_0": ["sac/Pendulum-v1/seed=0", "sac/Pendulum-v1/seed=1"],
                                               "9_1": ["sac/Pendulum-v1/seed=2"]}}]
    (suite.slurm_dir / SUBMISSIONS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert latest_tasks(suite) == {"sac/Pendulum-v1/seed=0": ("9_0", "bench-s"),
                                   "sac/Pendulum-v1/seed=1": ("9_0", "bench-s"),
                                   "sac/Pendulum-v1/seed=2": ("9_1", "bench-s")}


def test_local_runs_spread_over_devices_and_a_dying_run_spares_the_one_beside_it(results_dir):
    """The local pool is made of plain processes: a run SIGKILLed mid-training (as by the OOM killer) is recorded as
    failed while the other run goes on to the end (a concurrent.futures pool would have killed both)."""
    result = bench_cli("run", "--algos", "sac,dying_sac", "--envs", "Pendulum", "--suite", "dv", *TINY,
                       "--devices", "cpu,cpu", "--workers", "2", "--plugin", "dying_agent", results_dir=results_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    suite = results_dir / "dv"
    assert (suite / "sac" / "Pendulum-v1" / "seed=0" / "DONE").exists()
    died = suite / "dying_sac" / "Pendulum-v1" / "seed=0"
    assert "worker process died: killed (signal 9; out of memory?)" in (died / "error.txt").read_text()
    placement = yaml.safe_load((suite / "sweep.yaml").read_text())["placement"]
    assert placement["devices"] == ["cpu", "cpu"] and placement["workers"] == 2
