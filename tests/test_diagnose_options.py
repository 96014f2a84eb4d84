"""``gdscope diagnose`` as a new user drives it: a built-in kind's options by ``--arg``, a model
with dropout or batch norm, and a float64 factory run in float32."""

import json
import sys
import warnings

import pytest

import gdscope as gs
from _helpers import user_module
from gdscope.cli import main

NETS = """
import torch
from torch import nn


def data(n=24, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, 1, generator=g)


def with_dropout(eval_mode=False):
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))
    return net.eval() if eval_mode else net


def with_batch_norm(eval_mode=False):
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 1))
    return net.eval() if eval_mode else net


def float64_net():
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1)).double()
"""


@pytest.fixture
def project(tmp_path, monkeypatch, one_thread):
    """A folder holding the user's module ``optnets.py``, as the current directory; one thread."""
    return user_module(tmp_path, monkeypatch, "optnets", NETS)


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["gdscope", "diagnose", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err.strip()


SPHERE = ["--data", "sphere", "--data-arg", "n=12", "--data-arg", "d=5", "--lr", "0.1"]


def test_arg_sets_a_built_in_kinds_options(project, monkeypatch, capsys):
    """``--arg width=...`` on ``mlp`` was refused ("model.factory and model.args apply to kind
    'custom'"): a built-in kind takes its options from it, as a factory takes its keywords."""
    args = ["mlp", *SPHERE, "--steps", "4", "--probe-size", "6", "--hessian-size", "6"]
    args += ["--arg", "width=24", "--arg", "activation=tanh", "--arg", "depth=2", "--json"]
    code, out, err = _cli(monkeypatch, capsys, *args)
    assert code == 0, err
    model = json.loads(out)["config"]["model"]
    assert (model["kind"], model["width"], model["activation"], model["depth"]) == (
        "mlp",
        24,
        "tanh",
        2,
    )
    d = gs.diagnose(
        "mlp",
        "sphere",
        lr=0.1,
        steps=4,
        model_args={"width": 24, "depth": 2},
        data_args={"n": 12, "d": 5},
        ntk_examples=6,
        hessian_examples=6,
    )
    assert d.measurements.parameters == (5 * 24 + 24) + (24 + 1)  # depth 2: one hidden layer


def test_arg_naming_no_option_of_a_built_in_kind_is_one_line(project, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "mlp", *SPHERE, "--arg", "widht=24")
    assert code == 2 and out == ""
    assert err.startswith("error: --arg widht: not an option of the built-in model 'mlp'"), err
    assert len(err.splitlines()) == 1 and "width" in err
    with pytest.raises(ValueError, match="--arg widht"):
        gs.diagnose("mlp", "sphere", lr=0.1, model_args={"widht": 24})


@pytest.mark.parametrize(
    ("factory", "module"),
    [
        ("optnets:with_dropout", "Dropout"),
        ("optnets:with_batch_norm", "BatchNorm1d"),
    ],
)
def test_dropout_or_batch_norm_in_training_mode_says_what_to_return(
    project, monkeypatch, capsys, factory, module
):
    """The refusal said "call model.eval()", which a user of the CLI has nowhere to call."""
    results = project / "results"
    args = [factory, "--data", "optnets:data", "--lr", "0.1", "--steps", "5"]
    code, out, err = _cli(monkeypatch, capsys, *args, "--results", str(results))
    assert code == 2 and out == "" and not results.exists()
    assert len(err.splitlines()) == 1 and f"({module}) is in training mode" in err, err
    assert "diagnose trains and measures the model in the mode its factory returns" in err
    assert "return model.eval()" in err
    args += ["--arg", "eval_mode=true", "--probe-size", "8", "--hessian-size", "8"]
    code, out, err = _cli(monkeypatch, capsys, *args)
    assert code == 0, err


@pytest.mark.filterwarnings("default::UserWarning")  # as the command line runs: shown, not raised
def test_a_float64_factory_run_in_float32_says_so_in_one_line(project, monkeypatch, capsys):
    """The run silently rounded the factory's float64 weights to the float32 default."""
    args = ["optnets:float64_net", "--data", "optnets:data", "--lr", "0.1", "--steps", "4"]
    args += ["--probe-size", "8", "--hessian-size", "8"]
    code, _, err = _cli(monkeypatch, capsys, *args)
    assert code == 0
    assert err == (
        "warning: model.factory 'optnets:float64_net' returned float64 parameters, which the "
        "trial's dtype float32 rounds; set dtype = 'float64' (--dtype float64) to keep them"
    )
    code, _, err = _cli(monkeypatch, capsys, *args, "--dtype", "float64")
    assert code == 0 and err == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 widened to float64 is not rounded: no warning
        gs.diagnose(
            "optnets:with_dropout",
            "optnets:data",
            lr=0.1,
            steps=2,
            dtype="float64",
            model_args={"eval_mode": True},
            ntk_examples=8,
            hessian_examples=8,
        )
