"""Session 23's fixes, each test failing on the code before it.

One rule says when a model's failure was its inputs' dtype (``functional.unmatched_dtype``):
``gs.train`` asked for the word "dtype" in torch's message (a convolution says "Input type
(double) and bias type (float)": left as torch's words), and the probes' ``apply`` also took
whole-number inputs (an embedding model's own error came out as "pass x.to(torch.float32)").
"""

import pytest
import torch
from torch import nn

import gdscope as gs
from gdscope.functional import params_of
from gdscope.plan import load

F64 = torch.float64


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(12, 1))


def test_a_convolution_on_inputs_of_another_dtype_is_one_line_in_train():
    model = _conv()
    x, y = torch.randn(8, 1, 8, dtype=F64), torch.randn(8, 1, dtype=F64)
    with pytest.raises(
        ValueError, match=r"^data: x is torch.float64 but .* pass x.to\(torch.float32\)"
    ):
        gs.train(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), 2)


def test_a_convolution_on_inputs_of_another_dtype_is_one_line_in_a_probe():
    model = _conv()
    x, y = torch.randn(8, 1, 8, dtype=F64), torch.randn(8, 1, dtype=F64)
    with pytest.raises(ValueError, match=r"^the inputs are torch.float64 but the model's param"):
        gs.probes.gradient_norm(model, params_of(model), gs.losses.mse, (x, y))


class _Buggy(nn.Module):
    """An embedding model with its own dtype bug (a float index)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.embed(x).sum(1)
        return out.gather(1, torch.zeros_like(out))


def test_a_models_own_dtype_error_on_token_ids_is_its_own_in_a_probe():
    model = _Buggy()
    x, y = torch.randint(0, 10, (8, 3)), torch.randn(8, 1)
    with pytest.raises(RuntimeError, match="gather"):
        gs.probes.gradient_norm(model, params_of(model), gs.losses.mse, (x, y))


# The scheduled square-loss sandwich beside another loss recorded bounds of nothing: with
# torch's MSELoss (no ½, a mean over outputs too) it excluded the loss it was recorded beside,
# with cross-entropy it bounded nothing. Refused before anything runs, as a config and in code.


def _small() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), (
        torch.randn(8, 4),
        torch.randn(8, 1),
    )


@pytest.mark.parametrize("loss_fn", [nn.MSELoss(), gs.losses.cross_entropy, gs.losses.mae])
def test_the_sandwich_beside_another_loss_is_refused_before_training(loss_fn):
    model, data = _small()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"^probes: 'sandwich' holds for the square loss"):
        gs.train(model, torch.optim.SGD(model.parameters(), lr=0.1), data, 2, loss_fn=loss_fn,
                 probes={"loss": 1, "sandwich": 1})  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match=r"^probes: 'sandwich' holds for the square loss"):
        gs.monitor(model, loss_fn, data, probes={"sandwich": 1})


def test_the_sandwich_with_the_square_loss_still_bounds_it():
    model, data = _small()
    trace = gs.train(model, torch.optim.SGD(model.parameters(), lr=0.1), data, 3,
                     probes={"loss": 1, "sandwich": 1})  # fmt: skip
    series = [trace.series(m)[1] for m in ("sandwich_lower", "loss", "sandwich_upper")]
    assert len(series[0]) == 4
    for lower, loss, upper in zip(*series, strict=True):
        assert lower <= loss * (1 + 1e-9) and loss <= upper * (1 + 1e-9)


def test_a_config_with_the_sandwich_and_another_loss_is_refused_unless_stored():
    from gdscope.config.base import STORED

    bad = {"loss": "cross_entropy", "probes": {"loss": 1, "sandwich": 1}}
    with pytest.raises(ValueError, match=r"probes.sandwich holds for the square loss only"):
        gs.TrialConfig.model_validate(bad)
    stored = gs.TrialConfig.model_validate(bad, context={STORED: True})
    assert "sandwich" in stored.probes


def test_a_verdict_part_with_no_claims_prints_none_not_an_empty_table(capsys):
    """A run of a study with sanity claims only printed an empty "study claim status" header
    and "paper claims: 0 PASS, 0 FAIL, …"."""
    from types import SimpleNamespace

    from gdscope.cli import printing

    verdict = SimpleNamespace(status="PASS", role="sanity", claim_id="S1", statistic=1.0,
                              ci=None, band=(0.0, 2.0), n_points=3, reason="ok", finding=None)  # fmt: skip
    printing.print_verdicts([(SimpleNamespace(name="s", seeds=[0, 1]), verdict)])
    out = capsys.readouterr().out
    assert "paper claims: none" in out and "0 PASS" not in out.split("instrument checks")[0]
    assert out.count("study") == 1  # the instrument checks' table header only
    assert "instrument checks: 1 PASS" in out


def test_gdscope_train_shows_evenly_spaced_checkpoints_when_transposed():
    """7 checkpoints every 50 steps, more than 5 metrics: the columns were 0, 100, 150, 200, 300."""
    from gdscope.cli.trace_table import trace_table
    from gdscope.training import Trace

    steps = list(range(0, 301, 50))
    records = {f"m{i}": (steps, [float(i)] * len(steps)) for i in range(6)}
    table = trace_table(Trace(status="completed", steps=300, reason="ran", records=records))
    assert [c.header for c in table.columns][1:] == ["0", "100", "200", "300"]


def test_a_set_of_a_swept_base_key_is_refused_at_the_runs_scale():
    """``--set base.model.width=8`` on a study sweeping ``model.width`` was accepted and ignored;
    checked at the scale that runs (an axis only the paper scale sweeps is the base's at quick),
    and inside a swept table (risk-sandwich zips ``probes``)."""
    from gdscope import api
    from gdscope.studies.errors import StudyError

    def plan(name, override, scale="quick"):
        return api.plan_study(name, scale=scale, overrides=[override], results="/nonexistent")

    with pytest.raises(StudyError, match=r"^--set base.model.width=8: the study sweeps model"):
        plan("lazy-training", "base.model.width=8")
    with pytest.raises(StudyError, match=r"sweeps probes at this scale"):
        plan("risk-sandwich", "base.probes.grad_norm=5")
    with pytest.raises(StudyError, match=r"sweeps optimizer.lr"):
        plan("adaptive-edge-of-stability", "base.optimizer.lr=7", "paper")
    assert plan("adaptive-edge-of-stability", "base.optimizer.lr=7").trials  # quick: unswept
    assert load("lazy-training", ["base.steps=7"]).base["steps"] == 7  # unswept: as before


def test_an_invalid_study_from_a_set_says_the_set_made_it():
    """``--set seeds=[0,-1]`` was reported against the shipped catalogue file alone."""
    from gdscope.studies.errors import StudyError

    with pytest.raises(StudyError, match=r"lazy-training.toml with --set seeds=\[0,-1\]: invalid"):
        load("lazy-training", ["seeds=[0,-1]"])


def test_a_study_file_named_as_a_catalogue_study_is_refused(tmp_path):
    """A user's copy of a catalogue study, run into a store, replaced the catalogue study's
    verdicts there (``show``, the report and ``list claims`` then showed the copy's)."""
    from importlib.resources import files

    from gdscope.studies.errors import StudyError

    text = (files("gdscope.studies") / "catalog" / "lazy-training.toml").read_text()
    copy = tmp_path / "mine.toml"
    copy.write_text(text, encoding="utf-8")
    with pytest.raises(StudyError, match=r"is named 'lazy-training', as a catalogue study"):
        load(copy)
    copy.write_text(text.replace('name = "lazy-training"', 'name = "my-lazy"', 1))
    assert load(copy).name == "my-lazy"
    own = load(str(files("gdscope.studies") / "catalog" / "lazy-training.toml"))  # its own file
    assert own.name == "lazy-training"


def test_a_study_run_with_set_says_so_wherever_its_verdicts_are_shown(tmp_path, capsys):
    """A ``--set`` run's verdicts stood in ``show``, the report and the Markdown page as the
    study's, with nothing saying the study had been changed."""
    from gdscope import api
    from gdscope.cli.printing import print_verdicts

    result = api.run_study("nag-acceleration", scale="smoke", results=tmp_path,
                           overrides=["seeds=[1]"])  # fmt: skip
    note = "run with --set seeds=[1]"
    print_verdicts([(result.study, v) for v in result.verdicts])
    assert f"nag-acceleration: {note}" in capsys.readouterr().out
    assert note in api.report(tmp_path).read_text(encoding="utf-8")
    assert f"(smoke; {note})" in api.report(tmp_path, markdown=True).read_text(encoding="utf-8")
    plain = api.run_study("nag-acceleration", scale="smoke", results=tmp_path / "plain")
    print_verdicts([(plain.study, v) for v in plain.verdicts])
    assert "--set" not in capsys.readouterr().out
    assert "--set" not in api.report(tmp_path / "plain").read_text(encoding="utf-8")


def test_show_says_which_study_ran_with_set(tmp_path):
    """``gdscope show`` presented a ``--set`` run's verdicts as the study's."""
    import json
    import subprocess
    import sys

    from gdscope import api

    api.run_study("nag-acceleration", scale="smoke", results=tmp_path, overrides=["seeds=[1]"])
    show = [sys.executable, "-m", "gdscope", "show", str(tmp_path)]
    out = subprocess.run(show, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "nag-acceleration (smoke): run with --set seeds=[1]" in out.stdout
    data = json.loads(subprocess.run([*show, "--json"], capture_output=True, text=True).stdout)
    assert {tuple(v["overrides"]) for v in data["verdicts"]} == {("seeds=[1]",)}


def test_a_study_given_twice_is_refused_before_anything_is_written(tmp_path):
    """``gdscope run S S`` ran and counted it twice ("2 studies, 30 trials"); one store keeps
    one study per name, so the second judged and replaced the first."""
    import subprocess
    import sys

    from gdscope import api
    from gdscope.studies.errors import StudyError

    with pytest.raises(StudyError, match=r"^study 'nag-acceleration' is given twice"):
        api.run_studies(["nag-acceleration", "nag-acceleration"], scale="smoke", results=tmp_path)
    for dry in ([], ["--dry-run"]):
        args = ["run", "nag-acceleration", "nag-acceleration", "--results", str(tmp_path), *dry]
        out = subprocess.run([sys.executable, "-m", "gdscope", *args], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 2 and "given twice" in out.stderr, out.stderr
    assert not any(tmp_path.iterdir())


# The review of this session's own diff (each failing on the first version of these fixes)


def test_the_sandwich_is_accepted_with_the_auto_loss():
    """``loss = "auto"`` (the default: mse on real-valued targets) was refused with the sandwich."""
    config = gs.TrialConfig.model_validate({"probes": {"loss": 1, "sandwich": 1}})
    assert config.loss == "auto" and "sandwich" in config.probes


def test_a_runs_own_probe_named_sandwich_shadows_the_built_in_one():
    _, data = _small()
    labels = torch.tensor([0, 1] * 4)
    net = nn.Sequential(nn.Linear(4, 2))

    def mine(ctx):
        return {"my_bound": 1.0}

    trace = gs.train(net, torch.optim.SGD(net.parameters(), lr=0.1), (data[0], labels), 2,
                     loss_fn=gs.losses.cross_entropy, probes={"sandwich": 1},
                     extra_probes={"sandwich": mine})  # fmt: skip
    assert trace.final("my_bound") == 1.0


def test_a_models_own_error_is_not_called_a_dtype_mismatch():
    """Float64 data into a model that casts them itself, failing for its own reason (out of
    memory), was explained as "pass x.to(torch.float32)" by gs.train."""

    class Casting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model = Casting()
    x, y = torch.randn(4, 3, dtype=F64), torch.randn(4, 1, dtype=F64)
    with pytest.raises(RuntimeError, match="out of memory"):
        gs.train(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), 2)


def test_gradient_norm_of_a_model_frozen_for_functional_use_counts_every_entry():
    model, (x, y) = _small()
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.requires_grad_(False)
    leaves = {name: p.clone().requires_grad_() for name, p in params.items()}
    loss = gs.losses.mse(torch.func.functional_call(model, leaves, (x,)), y)
    expected = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in
                                                   torch.autograd.grad(loss, list(leaves.values()))]))  # fmt: skip
    value = gs.probes.gradient_norm(model, params, gs.losses.mse, (x, y))
    assert value == pytest.approx(float(expected), rel=1e-6)


def test_pseudo_huber_takes_a_0d_tensor_delta():
    x = torch.tensor([1.0, -2.0])
    assert float(gs.losses.pseudo_huber(x, torch.tensor(1.5))) == pytest.approx(
        float(gs.losses.pseudo_huber(x, 1.5))
    )


def test_a_copy_named_as_a_catalogue_study_is_refused_as_a_study_object_too(tmp_path):
    from importlib.resources import files

    from gdscope import api
    from gdscope.studies import load_study
    from gdscope.studies.errors import StudyError

    copy = tmp_path / "copy.toml"
    copy.write_text((files("gdscope.studies") / "catalog" / "nag-acceleration.toml").read_text())
    with pytest.raises(StudyError, match="as a catalogue study"):
        api.run_study(load_study(copy), scale="smoke", results=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_verify_without_a_factory_file_keeps_judging_on_the_spec(tmp_path, monkeypatch):
    """Trials that hash anew for another reason than a user's file (a new convention revision,
    meant to stop their reuse) are not judged from the stale stored trials."""
    from gdscope import api
    from gdscope.config.trial import TrialConfig

    study = tmp_path / "s.toml"
    study.write_text(
        'name = "rehash-demo"\nseeds = [0]\n[base]\nsteps = 3\nloss = "mse"\n'
        '"model.width" = 8\n"data.n" = 8\n"optimizer.name" = "gd"\n"optimizer.lr" = 0.1\n'
        '[[claims]]\nid = "c"\nkind = "within"\ny = { reduce = "final", metric = "loss" }\n'
        "band = [0, 100]\n"
    )
    assert api.run_study(str(study), results=tmp_path / "res").verdicts[0].status == "PASS"
    old = TrialConfig._revisions
    monkeypatch.setattr(TrialConfig, "_revisions", lambda self: {**old(self), "simulated": 2})
    (result,) = api.verify(tmp_path / "res")
    assert (result.trials, result.missing) == (1, 1)
    assert result.verdicts[0].status == "INCONCLUSIVE"


def test_a_dry_run_warns_of_a_claim_that_can_only_be_inconclusive(tmp_path):
    """A power law against a key the study does not sweep passed --dry-run and was found
    INCONCLUSIVE only after training."""
    import subprocess
    import sys

    study = tmp_path / "s.toml"
    study.write_text(
        'name = "unswept"\nseeds = [0]\n[base]\nsteps = 3\n"model.width" = 8\n"data.n" = 8\n'
        '[sweep]\n"data.n" = [4, 8, 16, 32]\n'
        '[[claims]]\nid = "w"\nkind = "power_law"\nx = "model.width"\n'
        'y = { reduce = "final", metric = "loss" }\nband = [-1, 0]\n'
        '[[claims]]\nid = "n"\nkind = "power_law"\nx = "data.n"\n'
        'y = { reduce = "final", metric = "loss" }\nband = [-1, 0]\n'
    )
    args = ["run", str(study), "--dry-run", "--results", str(tmp_path / "r")]
    out = subprocess.run([sys.executable, "-m", "gdscope", *args], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stdout.splitlines() if "warning:" in line]
    assert (
        len(warnings) == 1 and "claim w reads y against model.width, which takes 1" in warnings[0]
    )
