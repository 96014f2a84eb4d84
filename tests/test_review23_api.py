"""Review 23 (Python API): refusals that name their fix, and docs that say what is measured.

* B1: ``gs.losses.pseudo_huber`` is the test objective ``(x, delta)``; passed as a training loss
  it refuses with a pointer to ``pseudo_huber_loss`` (it failed with "Boolean value of Tensor").
* B3: ``train_ensemble``'s refusals name ``exact=False`` and the momentum rule.
* C1: the scheduled ``preconditioned_sharpness`` is ``λ_max(P⁻¹(H + λI))`` under Adam's coupled
  weight decay, against a dense float64 reference.
* C2: an unknown model kind says how a kind of one's own is registered.
* C3: the README's ``fit_linear_rate`` comment names fields ``RateFit`` has.
* C4: a relative ``steps_to_eps`` reports its best value in the threshold's units.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gdscope as gs
from _claims import record
from _helpers import assert_close
from gdscope.config.parts import ModelConfig
from gdscope.ensemble import Ensemble, NotBatchableError, train_ensemble
from gdscope.probes import _reference_extra as rx
from gdscope.studies import Reducer, reduce_record
from gdscope.training.curvature import preconditioned_sharpness_probe

F64 = torch.float64
README = Path(__file__).resolve().parents[1] / "README.md"


def _net(seed: int, *, layer_norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    norm = [nn.LayerNorm(8)] if layer_norm else []
    return nn.Sequential(nn.Linear(4, 8), *norm, nn.Tanh(), nn.Linear(8, 1)).to(F64)


def _sphere() -> tuple[torch.Tensor, torch.Tensor]:
    return gs.data.sphere(n=8, d=4, seed=0, dtype=F64)


# ---------------------------------------------------------------------------------------------
# B1


def test_pseudo_huber_objective_as_a_training_loss_names_the_training_loss():
    net = _net(0)
    data = _sphere()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    fix = r"delta must be a number, got a Tensor.*gs\.losses\.pseudo_huber_loss"
    with pytest.raises(ValueError, match=fix) as caught:
        gs.train(net, opt, data, 2, loss_fn=gs.losses.pseudo_huber)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=fix):
        gs.losses.pseudo_huber(net(data[0]), data[1])  # type: ignore[arg-type]
    # the objective and the training loss still work as documented
    x = torch.tensor([0.5, -2.0], dtype=F64)
    for delta in (2, 2.0, np.float64(2.0)):
        expected = (4 * (torch.sqrt(1 + (x / 2) ** 2) - 1)).sum()
        assert_close(gs.losses.pseudo_huber(x, delta), expected, rtol=1e-15)
    net = _net(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, data, 2, loss_fn=gs.losses.pseudo_huber_loss)
    assert trace.status == "completed"


# ---------------------------------------------------------------------------------------------
# B3


def _perturbed_check(exact: bool) -> str:
    """Run ``check_against_loop`` on a batched result whose last gradient is moved by 1e-6."""
    nets = [_net(s) for s in range(2)]
    x, y = _sphere()
    ensemble = Ensemble(nets, exact=exact)
    loss, out, grads = ensemble.loss_and_grad(gs.losses.mse, x, y, batched_data=False)
    name = list(grads)[-1]
    grads = {**grads, name: grads[name] + 1e-6}
    with pytest.raises(NotBatchableError) as caught:
        ensemble.check_against_loop(gs.losses.mse, [(x, y)] * 2, (loss, out, grads))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_batched_result_off_the_loop_names_exact_false_only_when_exact():
    message = _perturbed_check(exact=True)
    assert "pass exact=False" in message and "to rounding, not bitwise" in message
    assert "run the loop" in message
    message = _perturbed_check(exact=False)  # beyond rounding: only the loop is left
    assert "exact=False" not in message and "run the loop" in message


def test_mixed_zero_and_nonzero_momentum_says_what_must_be_equal_and_why():
    nets = [_net(s) for s in range(2)]
    before = [p.detach().clone() for p in nets[0].parameters()]
    opts = [
        torch.optim.SGD(n.parameters(), lr=0.1, momentum=m)
        for n, m in zip(nets, [0.0, 0.9], strict=True)
    ]
    with pytest.raises(NotBatchableError) as caught:
        train_ensemble(nets, opts, _sphere(), 3)
    message = str(caught.value)
    assert "momentum must be 0 for every member or for none" in message
    assert "runs the momentum buffer" in message and "separate ensembles" in message
    assert "\n" not in message
    assert all(torch.equal(p, q) for p, q in zip(nets[0].parameters(), before, strict=True))
    doc = " ".join((train_ensemble.__doc__ or "").split())
    assert "share which of momentum and weight decay are 0" in doc


# ---------------------------------------------------------------------------------------------
# C1


def test_scheduled_preconditioned_sharpness_includes_adams_coupled_weight_decay():
    """The recorded value is λ_max(P⁻¹(H + λI)) (dense float64), not λ_max(P⁻¹H)."""
    net = _net(0)
    x, y = gs.data.sphere(n=16, d=4, seed=0, dtype=F64)
    decay, lr = 5.0, 1e-2
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=decay)
    trace = gs.train(net, opt, (x, y), 10, probes={"preconditioned_sharpness": 10})
    recorded = trace.final("preconditioned_sharpness")
    scale = rx.dense_preconditioner(net, opt).rsqrt()
    hessian = rx.dense_hessian_block(net, gs.losses.mse, (x, y))
    eye = torch.eye(hessian.shape[0], dtype=F64)
    with_decay = rx.dense_top_eigenvalue(scale[:, None] * (hessian + decay * eye) * scale)
    without = rx.dense_top_eigenvalue(scale[:, None] * hessian * scale[None, :])
    assert_close(recorded, with_decay, rtol=1e-8)
    assert with_decay > 10 * without  # the decay term dominates here: the two are distinct


def test_preconditioned_sharpness_probe_docstring_says_the_decay_is_in_h():
    doc = " ".join((preconditioned_sharpness_probe.__doc__ or "").split())
    assert "not part of it" not in doc
    assert "λ_max(P⁻¹(H + λI))" in doc and "coupled ``weight_decay``" in doc


# ---------------------------------------------------------------------------------------------
# C2


def test_unknown_model_kind_says_how_to_register_one():
    with pytest.raises(ValueError) as caught:
        ModelConfig(kind="review23_unregistered_net")
    message = str(caught.value).splitlines()
    line = next(m for m in message if "unknown model kind" in m)
    assert "gs.register_model('review23_unregistered_net', fn)" in line
    assert "gdscope --import MODULE" in line and "GDSCOPE_IMPORT=MODULE" in line
    with pytest.raises(ValueError, match=r"did you mean 'mlp'\?"):
        ModelConfig(kind="mpl")  # a typo still gets its suggestion


# ---------------------------------------------------------------------------------------------
# C3


def test_readme_fit_linear_rate_comment_names_fields_of_ratefit():
    text = README.read_text(encoding="utf-8")
    block = text.split("## Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (line,) = [ln for ln in block.splitlines() if "gs.stats.fit_linear_rate(" in ln]
    comment = line.split("#", 1)[1]
    named = re.findall(r"\.([A-Za-z_]\w*)", comment)
    fields = {f.name for f in dataclasses.fields(gs.stats.RateFit)}
    assert named and set(named) <= fields, (named, sorted(fields))
    assert "rate" in named


# ---------------------------------------------------------------------------------------------
# C4


def test_relative_steps_to_eps_reports_its_best_relative_to_the_initial_value():
    steps = np.arange(0, 50, 10)
    values = np.array([0.36, 0.3, 0.2, 0.148, 0.16])  # best 0.148 = 0.411× initial
    rec = record({"seed": 0}, {"loss": (steps, values)})
    rel = reduce_record(Reducer(reduce="steps_to_eps", metric="loss", eps=0.01, relative=True), rec)
    assert math.isnan(rel.value)
    assert rel.reason == "loss never reached 0.01× initial (best 0.411× initial = 0.148)"
    absolute = reduce_record(Reducer(reduce="steps_to_eps", metric="loss", eps=0.01), rec)
    assert absolute.reason == "loss never reached 0.01 (best 0.148)"
