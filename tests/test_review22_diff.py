"""A review of this session's own changes found eight defects they introduced or left; each here.

Stored configs that a new refusal tripped over (``verify``), inference-mode parameter tensors the
kept-read check could not copy, the stop-rule refusal at an unknown ``n`` and its gap in
``gs.train``, an up-front dtype refusal of a model that casts its inputs, a probe measured under
the caller's autocast, a caller's Ray runner left joined, and a ``BrokenPipeError`` that was not
standard output's taken for ``| head``.
"""

import contextlib
import os
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import user_module
from gdscope import api
from gdscope.config import TrialConfig
from gdscope.config.base import STORED
from gdscope.runners import RayRunner

MINI_BATCH_STOP = {
    "data": {"name": "sphere", "n": 16, "d": 4},
    "model": {"width": 8, "depth": 2},
    "batch_size": 4,
    "steps": 3,
    "loss": "mse",
    "probes": {"grad_norm": 1},
    "stop": {"loss_below": 1e-3},
}


def test_a_stored_mini_batch_stop_rule_validates_as_stored():
    """``gdscope verify`` of a store written before the refusal stopped on it, exit 2."""
    with pytest.raises(ValueError, match=r"nothing measures it; add probes\.loss"):
        TrialConfig.model_validate(MINI_BATCH_STOP)
    stored = TrialConfig.model_validate(MINI_BATCH_STOP, context={STORED: True})
    assert stored.stop.loss_below == 1e-3


def test_a_batch_of_unknown_size_is_not_taken_for_a_mini_batch(tmp_path, monkeypatch):
    """A factory's ``n`` is unknown to the config (its ``data.n`` is unread): 32 of 32 rows is
    full batch, where every step's loss is checked."""
    user_module(tmp_path, monkeypatch, "thirtytwo")
    raw = {
        **MINI_BATCH_STOP,
        "data": {"name": "custom", "factory": "thirtytwo:data", "args": {"n": 32}},
        "batch_size": 32,
    }
    TrialConfig.model_validate(raw)


def test_gs_train_refuses_a_mini_batch_stop_rule_nothing_measures():
    torch.manual_seed(0)
    model, x, y = nn.Linear(4, 1), torch.randn(16, 4), torch.randn(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stop = gs.training.Stop(loss_below=1e9)
    with pytest.raises(ValueError, match=r"stop\.loss_below = 1000000000\.0 is checked where"):
        gs.train(model, opt, (x, y), 5, batch_size=8, stop=stop, probes={"grad_norm": 1})
    trace = gs.train(model, opt, (x, y), 5, batch_size=8, stop=stop, probes={"loss": 1})
    assert trace.status == "stopped"


class _Casting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.to(self.lin.weight.dtype))


def test_gs_train_explains_a_dtype_only_once_the_model_failed_on_it():
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1)
    model = _Casting()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert gs.train(model, opt, (x, y), 3).status == "completed"  # it casts: trained as it is
    plain = nn.Linear(4, 1)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"x is torch\.float64 but the model's parameters are"):
        gs.train(plain, opt, (x, y), 3)


def test_the_linearization_takes_parameters_made_in_inference_mode():
    """The kept-read check set ``requires_grad`` on the caller's tensors: torch refuses that on
    an inference tensor (the gap was 0.0014966 before the check)."""
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)), torch.randn(6, 3)
    with torch.inference_mode():
        p0 = {k: v.clone() for k, v in model.named_parameters()}
        pt = {k: v + 0.01 for k, v in p0.items()}
    plain = gs.probes.linearization_gap(model, {k: v.clone() for k, v in p0.items()}, pt, x)
    assert gs.probes.linearization_gap(model, p0, pt, x) == plain
    assert gs.probes.linearized_prediction(model, p0, pt, x).shape == (6, 1)


def test_hidden_activations_are_measured_outside_the_callers_autocast():
    from gdscope.probes.coord_check import hidden_activations

    torch.manual_seed(0)
    model = gs.models.mlp(4, 16, depth=3, seed=0)
    x = torch.randn(8, 4)
    (hidden, out) = hidden_activations(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (hidden_inside, out_inside) = hidden_activations(model, x)
    assert torch.equal(out_inside, out)
    assert all(torch.equal(a, b) for a, b in zip(hidden_inside, hidden, strict=True))


def test_a_callers_ray_runner_leaves_the_cluster_this_run_joined(tmp_path, monkeypatch):
    """``run_studies`` joined a caller's ``RayRunner`` and never left: a later runner with
    another address (or none) ran on that cluster."""
    ray = pytest.importorskip("ray")
    calls: list[str] = []
    state = {"on": False}

    def init(address=None, **_):
        calls.append(f"init {address}")
        state["on"] = True

    def shutdown():
        calls.append("shutdown")
        state["on"] = False

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setattr(ray, "is_initialized", lambda: state["on"])
    with socket.socket() as server:  # listening: the address's pre-check passes
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"ray://127.0.0.1:{server.getsockname()[1]}"
        study = tmp_path / "s.toml"
        study.write_text(
            'name = "s"\nseeds = [0]\n[base]\nsteps = 0\nloss = "mse"\n"model.width" = 4\n'
            '[[claims]]\nid = "c"\nkind = "within"\ny = { reduce = "final", metric = "loss" }\n'
            "band = [0, 100]\n"
        )
        with contextlib.suppress(Exception):  # the fake cluster runs nothing: what is left
            api.run_studies([study], runner=RayRunner(address), results=tmp_path / "r")
    assert calls[0] == f"init {address}" and calls[-1] == "shutdown" and not state["on"]


def test_a_broken_pipe_that_is_not_standard_outputs_is_an_error(tmp_path):
    """A user's model whose server went away (``BrokenPipeError``) ended ``gdscope train`` with
    141 and no message: it was taken for ``| head`` closing standard output (here a file)."""
    (tmp_path / "remote.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.lin, self.calls = torch.nn.Linear(16, 1), 0\n\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls > 3:  # the checks' forwards pass, then training's fail\n"
        "            raise BrokenPipeError(32, 'remote feature server went away')\n"
        "        return self.lin(x)\n\n\n"
        "def make():\n    return Net()\n"
    )
    code = (
        "import sys, gdscope as gs, remote; gs.register_model('remote_net', remote.make); "
        "from gdscope.cli import main; "
        "sys.argv = ['gdscope', 'train', '--model', 'remote_net', '--steps', '2']; main()"
    )
    with (tmp_path / "out.txt").open("w") as out:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )
    assert done.returncode == 2, done.stderr  # with its errno click exited 1, silently
    assert "error: remote feature server went away (not standard output's)" in done.stderr


def test_standard_output_is_broken_where_its_reader_hung_up(monkeypatch):
    """A socket (and a BSD pipe) whose reader has gone reports POLLHUP, not POLLERR."""
    from gdscope._output import stdout_broken

    mine, theirs = socket.socketpair()
    with mine:
        monkeypatch.setattr(sys, "stdout", mine.makefile("w"))
        assert not stdout_broken()
        theirs.close()
        assert stdout_broken()


def test_a_models_own_error_with_whole_number_inputs_is_not_called_a_dtype_mismatch():
    """Token ids are int64 by nature: an embedding model's own dtype error came out as "pass
    x.to(torch.float32)"."""

    class Buggy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.embed(x).sum(1)
            return out.gather(1, torch.zeros_like(out))  # a float index: the model's own bug

    model = Buggy()
    x, y = torch.randint(0, 10, (8, 3)), torch.randn(8, 1)
    with pytest.raises(RuntimeError, match="gather"):
        gs.train(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), 2)


def test_a_stop_rule_read_from_a_probe_of_another_name_is_not_refused():
    """``unmeasured_stop`` looked at probe names, ``Stop`` reads metrics: a run's own probe
    ``train_acc`` recording ``accuracy`` was refused."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def train_acc(ctx):
        return {"accuracy": float(gs.losses.accuracy(ctx.train_output(), ctx.data[1]))}

    trace = gs.train(
        model,
        opt,
        (x, y),
        200,
        loss_fn=gs.losses.cross_entropy,
        batch_size=16,
        stop=gs.training.Stop(accuracy_at_least=0.9),
        extra_probes={"train_acc": train_acc},
        probes={"train_acc": 1},
    )
    assert trace.status == "stopped"
