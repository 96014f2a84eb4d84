"""The Ray runner on a local Ray cluster (marked ``ray``; `.ci/run` runs these after the suite)."""

import functools
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from _stores import assert_same_results  # noqa: E402
from gdscope import api, trial  # noqa: E402
from gdscope.runners.ray import run_trials  # noqa: E402
from gdscope.store import Store  # noqa: E402
from gdscope.studies import StudyError  # noqa: E402

pytestmark = pytest.mark.ray
STUDY = "weights-stay-near-init"


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2,
        num_gpus=0,  # the same on a machine with a GPU
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    # test functions travel to the workers by value (the tests folder is not importable there)
    ray.cloudpickle.register_pickle_by_value(__import__(__name__))
    yield
    ray.shutdown()


def test_ray_runner_gives_the_same_store_as_the_local_runner(cluster, tmp_path):
    local = api.run_study(STUDY, scale="smoke", results=tmp_path / "local", workers=2)
    remote = api.run_study(STUDY, scale="smoke", runner="ray", results=tmp_path / "ray")
    assert remote.ran == local.ran == remote.trials and remote.failed == 0
    assert_same_results(Store(tmp_path / "local"), Store(tmp_path / "ray"))


def _dies_first_time(marker_dir: str, run_config, config):
    """Kill this worker process (SIGKILL) the first time any trial starts, then run normally."""
    marker = Path(marker_dir) / "killed"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return run_config(config)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def test_a_worker_killed_mid_task_is_retried_and_the_study_completes(
    cluster, tmp_path, monkeypatch
):
    reference = api.run_study(STUDY, scale="smoke", results=tmp_path / "local", workers=2)
    (tmp_path / "marks").mkdir()
    killer = functools.partial(_dies_first_time, str(tmp_path / "marks"), trial.run_config)
    monkeypatch.setattr(trial, "run_config", killer)  # what the runner sends to Ray
    result = api.run_study(STUDY, scale="smoke", runner="ray", results=tmp_path / "ray")
    killed_pid = int((tmp_path / "marks" / "killed").read_text())
    assert killed_pid != os.getpid()  # a worker died, not the driver
    assert result.failed == 0 and result.ran == result.trials == reference.trials
    assert [v.status for v in result.verdicts] == [v.status for v in reference.verdicts]
    assert_same_results(Store(tmp_path / "local"), Store(tmp_path / "ray"))


def test_a_trial_that_raises_is_a_failed_result_not_a_retry(cluster, tmp_path):
    calls = tmp_path / "calls"
    outcomes = {}
    run_trials(
        [("bad", {"steps": 2})],
        functools.partial(_count_and_raise, str(calls)),
        on_result=lambda h, c, o: outcomes.setdefault(h, o),
    )
    assert type(outcomes["bad"]).__name__ == "TrialError"
    assert "ValueError: no good" in str(outcomes["bad"])
    assert "_count_and_raise" in outcomes["bad"].traceback
    assert calls.read_text() == "x"  # ran once: exceptions are results, not retried


def _count_and_raise(path: str, config):
    with open(path, "a") as handle:
        handle.write("x")
    raise ValueError("no good")


def test_progress_and_bad_retries():
    with pytest.raises(ValueError, match="max_retries must be a non-negative integer"):
        run_trials([], print, on_result=print, max_retries=-1)
    ticks = []
    run_trials([], print, on_result=print, progress=lambda *t: ticks.append(t))
    assert ticks == [(0, 0)]


def test_ray_runs_ensembles_as_tasks_with_the_local_runners_results(cluster, tmp_path):
    local = api.run_study("mup-coord-check", scale="smoke", results=tmp_path / "local")
    remote = api.run_study(
        "mup-coord-check",
        scale="smoke",
        runner="ray",
        batch=True,
        workers=2,
        results=tmp_path / "ray",
    )
    assert remote.ran == local.ran == remote.trials and remote.failed == 0
    assert_same_results(Store(tmp_path / "local"), Store(tmp_path / "ray"))


def test_cuda_trials_on_a_cluster_without_a_gpu_stop_at_once_with_a_message(cluster, tmp_path):
    calls, seen = tmp_path / "calls", []
    message = (
        r"the trials ask for device 'cuda:1' but the Ray cluster at \S+ has no GPU; "
        r"run them on a machine with one or set device='cpu'"
    )
    with pytest.raises(StudyError, match=message):
        run_trials(
            [("cpu", {"steps": 2}), ("gpu", {"steps": 2, "device": "cuda:1"})],
            functools.partial(_count_and_raise, str(calls)),
            on_result=lambda *a: seen.append(a),
        )
    assert seen == [] and not calls.exists()  # nothing ran (Ray would wait for a GPU forever)
    with pytest.raises(StudyError, match="ask for device 'cuda' but the Ray cluster"):
        api.run_study(
            STUDY,
            scale="smoke",
            runner="ray",
            results=tmp_path / "ray",
            overrides=["base.device=cuda"],
        )
    assert ray.is_initialized()  # the caller's Ray is left running
