"""The Ray runner on a local Ray cluster (marked ``ray``; `.ci/run` runs these after the suite)."""

import functools
import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import gdscope  # noqa: E402
from _stores import assert_same_results  # noqa: E402
from gdscope import api  # noqa: E402
from gdscope.runners.ray import run_trials  # noqa: E402
from gdscope.store import Store  # noqa: E402
from gdscope.studies import StudyError  # noqa: E402
from gdscope.trials import trial  # noqa: E402

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


USER_NETS = """
import torch
from torch import nn


def make_net(width=8):
    return nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 1))
"""

USER_DATA = """
import torch


def make_data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randn(n, generator=g)
"""


USER_PROBE = """

def weight_norm(ctx):
    return {"weight_norm": float(sum(p.pow(2).sum() for p in ctx.params.values()) ** 0.5)}
"""


def _user_study(name: str, model: str, data: str, probes: str = "") -> str:
    return (
        f'name = "{name}"\nseeds = [0, 1]\n[base]\nsteps = 10\nloss = "mse"\n'
        '"optimizer.name" = "gd"\n"optimizer.lr" = 0.05\n'
        f"probes = {{ loss = 1, grad_norm = 5{probes} }}\n"
        f"[base.model]\n{model}\n[base.data]\n{data}\n"
        '[[claims]]\nid = "loss-falls"\nkind = "within"\n'
        'y = { reduce = "final_over_initial", metric = "loss" }\nband = [0, 0.999]\n'
    )


def _run_cli(monkeypatch, *args: str) -> None:
    from gdscope.cli import main

    monkeypatch.setattr(sys, "argv", ["gdscope", *args])
    try:
        main()
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"gdscope {' '.join(args)}: exit {exit_.code}"


def test_a_study_on_custom_factories_trains_in_ray_workers_as_locally(
    cluster, tmp_path, monkeypatch
):
    project = tmp_path / "project"  # not importable in the workers: loaded there by its path
    project.mkdir()
    (project / "raynets.py").write_text(USER_NETS)
    (project / "raydata.py").write_text(USER_DATA)
    study = project / "mine.toml"
    model = 'kind = "custom"\nfactory = "raynets:make_net"\nargs = { width = 8 }'
    data = 'name = "custom"\nfactory = "raydata:make_data"\nargs = { n = 16 }'
    study.write_text(_user_study("mine", model, data))
    _same_in_ray_as_locally(study, tmp_path, monkeypatch)


def _same_in_ray_as_locally(study: Path, tmp_path: Path, monkeypatch) -> None:
    """Run ``study`` with ``--runner local`` and ``--runner ray``: the same stored series."""
    monkeypatch.chdir(tmp_path)
    for runner in ("local", "ray"):
        _run_cli(monkeypatch, "run", str(study), "--runner", runner, "--results", runner,
                 "--no-report")  # fmt: skip
    assert len(Store(tmp_path / "ray").finished_hashes()) == 2
    assert_same_results(Store(tmp_path / "local"), Store(tmp_path / "ray"))


def test_registered_models_data_sets_and_probes_train_in_ray_workers_as_locally(
    cluster, tmp_path, monkeypatch, request
):
    from gdscope import registration
    from gdscope.training.user_probes import unregister_probe

    project = tmp_path / "project"  # not on any sys.path: the workers load the file by path
    project.mkdir()
    (project / "rayreg.py").write_text(USER_NETS + USER_DATA + USER_PROBE)
    spec = importlib.util.spec_from_file_location("rayreg", project / "rayreg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "rayreg", module)
    for registry in (registration.MODEL_REGISTRY, registration.DATASET_REGISTRY):
        monkeypatch.setattr(registry, "_entries", {})  # the registrations end with the test
    gdscope.register_model("ray_net", module.make_net)
    gdscope.register_dataset("ray_data", module.make_data)
    gdscope.register_probe("weight_norm", module.weight_norm, metrics=["weight_norm"])
    request.addfinalizer(lambda: unregister_probe("weight_norm"))
    study = project / "mine.toml"
    model = 'kind = "ray_net"\nargs = { width = 8 }'
    study.write_text(_user_study("mine", model, 'name = "ray_data"\nn = 16', ", weight_norm = 5"))
    _same_in_ray_as_locally(study, tmp_path, monkeypatch)
    assert all("weight_norm" in r.series for r in Store(tmp_path / "ray").records())
