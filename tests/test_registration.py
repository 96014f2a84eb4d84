"""A user's own networks and data sets by name: ``gs.register_model`` and ``gs.register_dataset``."""

import importlib.util
import pickle
import sys
import types

import pytest
import torch

import gdscope as gs
from _helpers import registries_restored
from _stores import assert_same_results
from gdscope import registration
from gdscope.cli import main
from gdscope.config import TrialConfig
from gdscope.data import DATASETS
from gdscope.store import Store
from gdscope.trials.networks import MODELS
from gdscope.trials.trial import run_trial

USER_CODE = """
import torch
from torch import nn


def make_net(width=8):
    return nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 1))


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.body = nn.Linear(5, width)
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def make_number(width=8):
    return 3


def make_data(n=16, seed=0):
    \"\"\"Gaussian inputs in 5 dimensions, Gaussian targets.\"\"\"
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randn(n, generator=g)


def split_data(n, seed=0, split="train", noise=0.5):
    g = torch.Generator().manual_seed(seed + (split == "test"))
    x = torch.randn(n, 5, generator=g)
    return x.numpy(), (x.sum(1) + noise * torch.randn(n, generator=g)).numpy()
"""


@pytest.fixture(autouse=True)
def clean_registries():
    """Each test ends with the registries as they were before it."""
    with registries_restored():
        yield


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's module ``regnets``, imported from a folder that is not on ``sys.path``."""
    path = tmp_path / "regnets.py"
    path.write_text(USER_CODE)
    module = _load(path, "regnets")
    monkeypatch.setitem(sys.modules, "regnets", module)
    return module


def _config(kind="user_net", data="user_data", **model):
    return TrialConfig.model_validate(
        {
            "model": {"kind": kind, **model},
            "data": {"name": data, "n": 12, **({"d": 5} if data == "sphere" else {})},
            "loss": "mse",
            "steps": 4,
            "probes": {"loss": 1},
        }
    )


def test_a_registered_model_and_data_set_validate_train_and_are_listed(user, capsys):
    gs.register_model("user_net", user.make_net)
    gs.register_dataset("user_data", user.make_data)
    assert "user_net" in MODELS and "user_net" in registration.model_kinds()
    assert DATASETS["user_data"] is user.make_data and list(DATASETS)[-1] == "user_data"
    config = _config(args={"width": 4})
    assert config.data.loader_parameters() == ["n", "seed"]
    trace = run_trial(config)
    steps, loss = trace.series("loss")
    assert trace.status == "completed" and len(steps) == 5 and loss[-1] < loss[0]
    torch.manual_seed(7)  # built after seeding with the trial seed: the same run again
    assert run_trial(config).series("loss")[1].tolist() == loss.tolist()

    gs.register_model("user_class", user.Net)  # a class works as well
    assert run_trial(_config("user_class", args={"width": 4})).status == "completed"

    for argv in (["list", "models"], ["list", "datasets"]):
        sys.argv = ["gdscope", *argv]
        with pytest.raises(SystemExit) as done:  # the console script always exits
            main()
        assert done.value.code == 0
    out = capsys.readouterr().out
    assert "regnets:make_net" in out and "regnets:Net" in out
    assert "Gaussian inputs in 5 dimensions, Gaussian targets. (regnets:make_data" in out


def test_gdscope_train_takes_registered_names(user, monkeypatch, capsys):
    gs.register_model("user_net", user.make_net)
    gs.register_dataset("user_data", user.make_data)
    argv = ["gdscope", "train", "--model", "user_net", "--data", "user_data", "--n", "8"]
    monkeypatch.setattr(sys, "argv", [*argv, "--steps", "3", "--loss", "mse"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    assert "status: completed after 3 steps" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [*argv, "--width", "64"])
    with pytest.raises(SystemExit):
        main()
    assert "pass it to its function as model.args.width" in capsys.readouterr().err


def test_registration_refuses_built_in_names_and_silent_overwrites(user):
    cases = [
        (gs.register_model, "mlp", user.make_net, "'mlp' is a built-in model; choose another"),
        (gs.register_model, "custom", user.make_net, "'custom' is a built-in model"),
        (gs.register_dataset, "digits", user.make_data, "'digits' is a built-in dataset"),
        (gs.register_model, "my-net", user.make_net, "must be letters, digits and '_'"),
        (gs.register_model, "net", 3, "needs a function or class defined in a module, got a int"),
    ]
    for register, name, fn, message in cases:
        with pytest.raises(ValueError, match=message):
            register(name, fn)
    gs.register_model("user_net", user.make_net)
    gs.register_model("user_net", user.make_net)  # the same function again: a no-op
    with pytest.raises(ValueError) as error:
        gs.register_model("user_net", user.Net)
    message = str(error.value)
    assert message == (
        "register_model: 'user_net' is registered already as regnets:make_net; pass "
        "replace=True to replace it, or choose another name"
    )
    gs.register_model("user_net", user.Net, replace=True)
    assert registration.MODEL_REGISTRY.get("user_net").ref == "regnets:Net"
    with pytest.raises(TypeError):
        DATASETS["user_data"] = user.make_data  # read-only: the built-ins cannot change
    with pytest.raises(ValueError, match=r"unknown model kind 'user_nte'.*did you mean 'user_net'"):
        _config("user_nte")


def test_config_keys_of_registered_names(user):
    gs.register_model("user_net", user.make_net)
    gs.register_dataset("split_data", user.split_data)
    with pytest.raises(ValueError, match=r"model\.depth applies to the built-in kinds"):
        _config(depth=5, data="sphere")
    with pytest.raises(ValueError, match=r"remove model\.factory"):
        _config(factory="json:dumps", data="sphere")
    with pytest.raises(ValueError, match="dataset 'split_data' takes no option 'sigma'"):
        TrialConfig.model_validate({"data": {"name": "split_data", "options": {"sigma": 1}}})
    config = TrialConfig.model_validate(
        {
            "model": {"kind": "user_net", "args": {"width": 4}, "output_scale": 2.0},
            "data": {"name": "split_data", "n": 10, "options": {"noise": 0.0}},
            "loss": "mse",
            "steps": 2,
            "probes": {"loss": 1, "test": 1},
        }
    )
    trace = run_trial(config)  # split="train" and "test": a held-out set
    assert trace.status == "completed" and "test_loss" in trace.metrics


def test_the_hash_follows_the_registered_code(user, tmp_path, monkeypatch):
    gs.register_model("user_net", user.make_net)
    gs.register_dataset("user_data", user.make_data)
    first = _config().content_hash()
    assert _config().model.hash_payload()["registered"] == {
        "ref": "regnets:make_net",
        "sha256": registration.MODEL_REGISTRY.get("user_net").sha256,
    }
    assert "registered" not in _config("mlp", "sphere").model.hash_payload()  # built-ins unchanged
    (tmp_path / "regnets.py").write_text(USER_CODE + "\n# edited\n")
    edited = _load(tmp_path / "regnets.py", "regnets")
    with pytest.raises(ValueError, match="registered already"):
        gs.register_model("user_net", edited.make_net)  # other code: not silently replaced
    gs.register_model("user_net", edited.make_net, replace=True)
    second = _config().content_hash()
    assert second != first
    gs.register_dataset("user_data", edited.make_data, replace=True)
    assert _config().content_hash() not in (first, second)


def test_a_registration_reaches_a_worker_by_import_or_by_file(user, tmp_path, monkeypatch):
    gs.register_model("user_net", user.make_net)
    shipped = pickle.dumps(registration.registrations())
    monkeypatch.delitem(sys.modules, "regnets")  # a worker where regnets is not importable
    registration.MODEL_REGISTRY._entries.clear()
    registration.install_registrations(pickle.loads(shipped))
    entry = registration.MODEL_REGISTRY.get("user_net")
    assert entry.fn is not user.make_net and entry.fn.__code__.co_filename == user.__file__
    assert run_trial(_config(data="sphere")).status == "completed"

    (tmp_path / "regnets.py").write_text(USER_CODE + "\n# edited\n")  # after registering
    registration.MODEL_REGISTRY._entries.clear()
    registration.install_registrations(pickle.loads(shipped))
    with pytest.raises(ValueError, match=r"regnets\.py changed since it was registered"):
        run_trial(_config(data="sphere"))


def test_a_function_without_a_file_runs_in_this_process_only():
    module = types.ModuleType("console")
    exec(USER_CODE, module.__dict__)  # as typed into a console: no source file
    gs.register_model("typed_net", module.make_net)
    assert run_trial(_config("typed_net", "sphere")).status == "completed"
    [(_, shipped)] = pickle.loads(pickle.dumps(registration.registrations()))["model"].items()
    with pytest.raises(ValueError, match="not defined at the top level of a module file"):
        shipped.fn()


def test_a_model_returning_no_module_is_one_line_naming_the_kind(user):
    gs.register_model("number", user.make_number)
    with pytest.raises(ValueError) as error:
        run_trial(_config("number", "sphere"))
    assert str(error.value) == (
        "model.kind 'number' (regnets:make_number) returned a int, not a torch.nn.Module; "
        "return the network"
    )


def test_registered_names_in_a_study_on_spawned_workers(user, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers import regnets by name
    gs.register_model("user_net", user.make_net)
    gs.register_dataset("user_data", user.make_data)
    study = tmp_path / "mine.toml"
    study.write_text(
        'name = "mine"\nseeds = [0, 1]\n[base]\nsteps = 5\nloss = "mse"\n'
        'probes = { loss = 1 }\n"optimizer.lr" = 0.05\n'
        '[base.model]\nkind = "user_net"\nargs = { width = 4 }\n'
        '[base.data]\nname = "user_data"\nn = 12\n'
        '[[claims]]\nid = "c"\nkind = "within"\ny = { reduce = "final", metric = "loss" }\n'
        "band = [0, 100]\n"
    )
    one = gs.run_study(study, results=tmp_path / "one")
    two = gs.run_study(study, results=tmp_path / "two", workers=2)
    assert one.ran == two.ran == 2 and one.failed == two.failed == 0
    assert_same_results(Store(tmp_path / "one"), Store(tmp_path / "two"))


def test_the_built_in_kinds_are_the_networks_builders():
    assert tuple(MODELS)[: len(registration.MODEL_KINDS)] == registration.MODEL_KINDS
    assert type(MODELS).__name__ == type(DATASETS).__name__ == "mappingproxy"


def _pool_trials(kind, data="user_data", seeds=(0, 1)):
    configs = [
        {
            "model": {"kind": kind, **({"args": {"width": 4}} if kind != "mlp" else {})},
            "data": {"name": data, "n": 12},
            "loss": "mse",
            "steps": 3,
            "seed": seed,
        }
        for seed in seeds
    ]
    return [(str(i), config) for i, config in enumerate(configs)]


def test_a_running_pool_sees_what_is_registered_after_it_started(user, tmp_path, monkeypatch):
    from gdscope.runners import WorkerPool, run_trials
    from gdscope.trials.trial import run_config

    monkeypatch.syspath_prepend(str(tmp_path))  # the workers import regnets by name

    def run(trials, pool):
        outcomes: dict = {}
        run_trials(trials, run_config, on_result=lambda h, c, o: outcomes.update({h: o}), pool=pool)
        return [outcomes[h] for h, _ in trials]

    with WorkerPool(2) as pool:
        gs.register_dataset("user_data", user.make_data)
        assert all(o.status == "completed" for o in run(_pool_trials("mlp"), pool))
        first = pool.executor()  # started, with user_data only
        gs.register_model("late_net", user.make_net)  # after the workers started
        late = _pool_trials("late_net")
        outcomes = run(late, pool)
        assert pool.executor() is first  # the same workers, not a fresh pool
        assert [type(o).__name__ for o in outcomes] == ["Trace", "Trace"], outcomes
        expected = [run_config(config).series("loss")[1].tolist() for _, config in late]
        assert [o.series("loss")[1].tolist() for o in outcomes] == expected

        (tmp_path / "regnets.py").write_text(USER_CODE.replace("nn.Tanh()", "nn.ReLU()"))
        edited = _load(tmp_path / "regnets.py", "regnets")  # the code edited, registered again
        gs.register_model("late_net", edited.make_net, replace=True)  # the workers follow
        replaced = [o.series("loss")[1].tolist() for o in run(late, pool)]
        assert replaced == [run_config(c).series("loss")[1].tolist() for _, c in late]
        assert replaced != expected

        registration.unregister_model("late_net")  # removed: the workers drop it too
        gone = run(late, pool)
        assert all("unknown model kind 'late_net'" in str(o) for o in gone), gone
        assert pool.executor() is first
