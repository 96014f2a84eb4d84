"""``gdscope diagnose`` / ``gs.diagnose``: the regime of a user's network and the theory checks."""

import json
import sys
import textwrap
import warnings

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.cli import main
from gdscope.store import Store

NETS = """
import torch
import gdscope as gs


def centered_two(width=2048, d=8):
    net = gs.models.two_layer(d_in=d, width=width, seed=0, dtype=torch.float64)
    return gs.models.wrap_output(net, center=True)


def mlp(width=64, depth=2, parameterization="ntk", d=8):
    return gs.models.mlp(
        d_in=d, width=width, depth=depth, parameterization=parameterization, seed=0,
        dtype=torch.float64,
    )


def sphere(n=16, d=8, scale=1.0, seed=0):
    x, y = gs.data.sphere(n=n, d=d, seed=seed, dtype=torch.float64)
    return x, scale * y


def broken(width=4):
    raise RuntimeError("no such net")


def not_a_module():
    return 3


def tanh_net(width=512, d=5):
    return torch.nn.Sequential(
        torch.nn.Linear(d, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
    )


def four_twice(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(196, 5, generator=g)
    x = x / x.norm(dim=1, keepdim=True)
    return torch.cat([x, x[:4]]), torch.randn(200, 1, generator=g)


def duplicated(n=12, d=8, seed=0):
    x, y = gs.data.sphere(n=n, d=d, seed=seed, dtype=torch.float64)
    x[1] = x[0]  # the Gram is exactly singular
    return x, y
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder holding the user's module ``dgnets.py``, as the current directory; one thread."""
    (tmp_path / "dgnets.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny products: threads cost more than they give
    yield tmp_path
    torch.set_num_threads(threads)


def _oscillation_onset(edge: float, steps: int = 200, rounds: int = 10) -> tuple[float, float]:
    """Bracket, by bisection on plain GD runs, the smallest lr whose loss ever rises.

    The network (a centered wide two-layer ReLU net, outputs 0 at init) and data (targets scaled
    by 0.1) of the diagnosed run: the residual is small, so the weights barely move and the
    loss is a quadratic in θ to high accuracy over the run; GD on a quadratic of top curvature S
    has a monotone loss iff η ≤ 2/S (the top mode's square contracts by (1 − ηS)²), so the
    onset is where 2/S₀ puts it unless the instrument or the edge formula is wrong. The loop is
    written here, independently of gdscope's training loop.
    """
    x, y = gs.data.sphere(n=16, d=8, seed=0, dtype=torch.float64)
    y = 0.1 * y

    def loss_rises(lr: float) -> bool:
        net = gs.models.wrap_output(
            gs.models.two_layer(d_in=8, width=2048, seed=0, dtype=torch.float64), center=True
        )
        weights = [p for p in net.parameters() if p.requires_grad]
        previous = None
        for _ in range(steps):
            loss = gs.losses.mse(net(x), y)
            grads = torch.autograd.grad(loss, weights)
            with torch.no_grad():
                for w, g in zip(weights, grads, strict=True):
                    w -= lr * g
            value = float(loss.detach())
            if previous is not None and not value <= previous:
                return True
            previous = value
        return False

    lo, hi = 0.5 * edge, 2.0 * edge
    assert not loss_rises(lo) and loss_rises(hi)
    for _ in range(rounds):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if loss_rises(mid) else (mid, hi)
    return lo, hi


def test_the_edge_verdict_flips_at_2_over_s0_where_gd_starts_to_oscillate(project):
    kw = {"data_args": {"scale": 0.1}, "dtype": "float64", "steps": 20, "every": 10}
    first = gs.diagnose("dgnets:centered_two", "dgnets:sphere", lr=1.0, **kw)
    m = first.measurements
    edge = m.stability_edge
    assert_close(edge, 2 / m.sharpness_init, rtol=1e-6, atol=1e-12)
    below = gs.diagnose("dgnets:centered_two", "dgnets:sphere", lr=0.9 * edge, **kw)
    above = gs.diagnose("dgnets:centered_two", "dgnets:sphere", lr=1.1 * edge, **kw)
    assert below.measurements.above_edge is False
    assert below.check("stability").status == "holds"
    assert above.measurements.above_edge is True
    assert above.check("stability").status == "fails"
    assert above.measurements.edge_step == 0  # S₀ is above S* = 2/η already
    assert below.measurements.edge_step is None

    lo, hi = _oscillation_onset(edge)
    assert hi / lo < 1.01
    assert abs(lo / edge - 1) < 0.05 and abs(hi / edge - 1) < 0.05, (lo / edge, hi / edge)


def test_a_wide_ntk_mlp_is_lazy_and_a_narrow_mup_mlp_learns_features(project):
    kw = {"dtype": "float64", "steps": 60, "every": 20}
    wide = gs.diagnose(
        "dgnets:mlp",
        "dgnets:sphere",
        lr=2.0,
        model_args={"width": 2048, "depth": 2, "parameterization": "ntk"},
        **kw,
    )
    narrow = gs.diagnose(
        "dgnets:mlp",
        "dgnets:sphere",
        lr=0.05,
        model_args={"width": 16, "depth": 3, "parameterization": "mup"},
        **kw,
    )
    for d in (wide, narrow):  # both train: the regime is not a failed run's
        assert d.measurements.status == "completed"
        assert d.measurements.loss_final < 0.5 * d.measurements.loss_init
    assert wide.regime == "lazy", wide.regime_reason
    assert wide.measurements.ntk_drift < 0.03 and wide.measurements.weight_movement < 0.05
    assert wide.check("ntk_regime").status == "holds"
    assert narrow.regime == "feature learning", narrow.regime_reason
    assert narrow.measurements.ntk_drift > 0.3
    assert narrow.check("ntk_regime").status == "fails"
    # the theorem is about the kernel regime: outside it, n/a (it said "fails", read as evidence)
    assert narrow.check("nag").status == "n/a"
    assert "needs the kernel regime" in narrow.check("nag").threshold
    assert narrow.check("stability").status == "n/a"  # μP's lr multipliers: no 2/S₀ edge
    assert "lr multipliers" in narrow.check("stability").threshold


def test_a_diverged_or_short_run_says_nothing_about_its_regime(project):
    """A run diverged at step 4 held 'edge of stability' (S₀ above S* at step 0) and 'lazy
    weights' (movement 0, the step-0 value); 3 steps were 'lazy: kernel regime'."""
    kw = {"dtype": "float64", "model_args": {"width": 64}}
    short = gs.diagnose("dgnets:mlp", "dgnets:sphere", lr=0.1, steps=3, **kw)
    lr = 10 * short.measurements.stability_edge
    diverged = gs.diagnose("dgnets:mlp", "dgnets:sphere", lr=lr, steps=40, every=5, **kw)
    assert diverged.measurements.status == "diverged" and diverged.regime == "diverged"
    for key in ("edge_of_stability", "lazy_weights", "ntk_regime", "nag"):
        assert diverged.check(key).status == "n/a", key
    assert diverged.measurements.weight_movement != 0.0  # the final weights, not step 0's
    assert short.regime == "unknown" and "too few" in short.regime_reason
    for key in ("lazy_weights", "ntk_regime", "nag"):
        assert short.check(key).status == "n/a", key


def test_the_edge_is_not_reached_by_starting_above_it(project):
    kw = {"data_args": {"scale": 0.1}, "dtype": "float64", "steps": 20, "every": 10}
    first = gs.diagnose("dgnets:centered_two", "dgnets:sphere", lr=1.0, **kw)
    above = gs.diagnose(
        "dgnets:centered_two", "dgnets:sphere", lr=1.1 * first.measurements.stability_edge, **kw
    )
    check = above.check("edge_of_stability")
    assert check.status == "n/a" and "already at init" in check.threshold


def test_the_rate_check_needs_the_training_sets_lambda_min(project):
    """λ_min of a probe subset bounds the training set's from above: the check failed a lazy run."""
    kw = {"dtype": "float64", "steps": 30, "model_args": {"width": 512}}
    subset = gs.diagnose("dgnets:mlp", "dgnets:sphere", lr=0.5, ntk_examples=8, **kw)
    check = subset.check("ntk_rate")
    assert check.status == "n/a" and "only bounds it from above" in check.threshold
    whole = gs.diagnose("dgnets:mlp", "dgnets:sphere", lr=0.5, ntk_examples=16, **kw)
    assert whole.check("ntk_rate").status != "n/a", whole.check("ntk_rate").threshold


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_singular_gram_has_lambda_min_zero_whatever_the_seed(project, seed, dtype):
    """A duplicated input: λ_min came out ±1e-17 (float32: ±1e-7), 'NTK regime holds' for half
    the seeds; the spectrum comes from a float64 copy of the model."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = gs.diagnose(
            "dgnets:mlp", "dgnets:duplicated", lr=0.02, steps=20, seed=seed, dtype=dtype
        )
    # the factory builds float64: a float32 run says it rounds them, a float64 run says nothing
    assert [str(w.message) for w in caught] == (
        [
            "model.factory 'dgnets:mlp' returned float64 parameters, which the trial's dtype float32 "
            "rounds; set dtype = 'float64' (--dtype float64) to keep them"
        ]
        if dtype == "float32"
        else []
    )
    assert d.measurements.ntk_lambda_min == 0.0
    assert d.check("ntk_regime").status == "fails"


def _cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["gdscope", "diagnose", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return int(exit_.value.code or 0)


def test_cli_json_is_strict_html_is_one_page_and_results_are_stored(project, monkeypatch, capsys):
    import gdscope.diagnose.render  # noqa: F401  # importing the package keeps gs.diagnose callable

    assert callable(gs.diagnose)
    page, results = project / "out" / "page.html", project / "results"
    args = ["dgnets:mlp", "--data", "dgnets:sphere", "--lr", "0.5", "--steps", "12"]
    args += ["--arg", "width=128", "--data-arg", "n=12", "--dtype", "float64", "--probe-size", "8"]
    args += ["--hessian-size", "6"]  # a subset: the run's sharpness probe reads those 6 examples
    code = _cli(monkeypatch, *args, "--json", "--html", str(page), "--results", str(results))
    assert code == 0
    out = capsys.readouterr().out

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    doc = json.loads(out, parse_constant=refuse)
    assert doc["measurements"]["ntk_examples"] == 8
    assert doc["measurements"]["hessian_examples"] == 6
    first_sharpness = doc["series"]["sharpness"]["values"][0]  # along the run, on the subset
    assert_close(first_sharpness, doc["measurements"]["sharpness_init"], rtol=2e-3, atol=1e-12)
    assert "diagnose_subset_sharpness" not in gs.PROBES  # registered for the run only
    assert doc["regime"] in ("lazy", "feature learning", "intermediate")
    assert {c["key"] for c in doc["checks"]} >= {"stability", "ntk_regime", "pl", "nag"}
    assert len(doc["series"]["loss"]["steps"]) == 13
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "<script" not in text
    (run,) = Store(results).studies(monitored=True)
    assert run["name"] == "diagnose-mlp"
    assert {"loss", "sharpness", "lr"} <= set(
        Store(results).records(run["name"], "monitor")[0].series
    )


@pytest.mark.parametrize(
    ("model", "data", "named"),
    [
        ("dgnets:broken", "dgnets:sphere", "dgnets:broken"),
        ("nomodule:make_net", "dgnets:sphere", "nomodule:make_net"),
        ("dgnets:not_a_module", "dgnets:sphere", "dgnets:not_a_module"),
        ("dgnets:mlp", "dgnets:broken", "dgnets:broken"),
        ("dgnets:centered_two", "dgnets:sphere", "dgnets:centered_two"),  # x has d=5, net d=8
    ],
)
def test_a_bad_factory_is_one_line_exit_2_nothing_written(
    project, monkeypatch, capsys, model, data, named
):
    page, results = project / "page.html", project / "results"
    args = [model, "--data", data, "--lr", "0.1", "--steps", "3", "--data-arg", "d=5"]
    code = _cli(monkeypatch, *args, "--html", str(page), "--results", str(results))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and named in err, err
    assert not page.exists() and not results.exists()


def test_a_float32_runs_lambda_min_does_not_take_the_sign_of_its_rounding(project):
    """K₀ of a float32 model carries float32 rounding (1e-5 of λ_max): λ_min ≈ 2e-7 came out
    +7e-8, +3e-8, +9e-8, −1.5e-7, −1e-7, −1.1e-7 for seeds 0–5. It comes from a float64 copy."""
    values = []
    for seed in range(6):
        d = gs.diagnose("dgnets:tanh_net", "dgnets:four_twice", lr=0.1, steps=10, seed=seed)
        values.append(d.measurements.ntk_lambda_min)
        assert "the training set's λ_min may be smaller" in d.check("ntk_regime").threshold
    assert min(values) >= 0  # 0 where the probe set holds a duplicated pair: singular
    assert sum(v > 1e-7 for v in values) >= 4, values


def test_results_naming_a_file_is_refused_before_training(project, monkeypatch, capsys):
    """It was found only after the whole run (10.7 s of 3 000 steps)."""
    store = project / "results.txt"
    store.write_text("notes")
    args = ["dgnets:mlp", "--data", "dgnets:sphere", "--lr", "0.1", "--steps", "100000"]
    code = _cli(monkeypatch, *args, "--results", str(store))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: --results={store} is a file; give a results directory"
    assert store.read_text() == "notes"
