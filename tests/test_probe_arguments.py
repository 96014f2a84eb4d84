"""A curvature probe given a batch that is not (x, y), a loss of one argument or an integer
generator says so in one line, naming the argument, what it got and the fix."""

import pytest
import torch

import gdscope as gs

PROBES = {
    "sharpness": lambda net, loss, batch, **kw: gs.probes.sharpness(net, loss, batch, **kw),
    "hessian_trace": lambda net, loss, batch, **kw: gs.probes.hessian_trace(net, loss, batch, **kw),
    "hessian_spectral_density": lambda net, loss, batch, **kw: gs.probes.hessian_spectral_density(
        net, loss, batch, steps=4, **kw
    ),
    "ggn_sharpness": lambda net, loss, batch, **kw: gs.probes.ggn_sharpness(net, loss, batch, **kw),
}


def _problem():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    gen = torch.Generator().manual_seed(0)
    return net, torch.randn(6, 3, generator=gen), torch.randn(6, 1, generator=gen)


@pytest.mark.parametrize("name", list(PROBES))
def test_a_batch_that_is_not_a_pair_is_named(name):
    net, x, y = _problem()
    for batch, got in (
        (x, r"a tensor of shape \(6, 3\)"),
        ({"x": x, "y": y}, r"a dict with keys \['x', 'y'\]"),
        ((x, y, y), "a tuple of 3 items"),
    ):
        with pytest.raises(ValueError, match=rf"^{name}: batch must be a pair \(x, y\).*got {got}"):
            PROBES[name](net, gs.losses.mse, batch)


@pytest.mark.parametrize("name", list(PROBES))
def test_a_loss_that_cannot_take_output_and_target_is_named(name):
    net, x, y = _problem()
    with pytest.raises(
        ValueError, match=rf"^{name}: loss_fn is called as loss_fn\(output, target\)"
    ):
        PROBES[name](net, lambda out: out.pow(2).mean(), (x, y))
    with pytest.raises(ValueError, match=rf"^{name}: loss_fn must be a function.*got str"):
        PROBES[name](net, "mse", (x, y))


def test_torch_losses_and_lists_are_taken():
    net, x, y = _problem()
    by_module = gs.probes.sharpness(net, torch.nn.MSELoss(), [x, y], tol=1e-8)
    by_function = gs.probes.sharpness(net, torch.nn.functional.mse_loss, (x, y), tol=1e-8)
    assert by_module == pytest.approx(by_function, rel=1e-6)


@pytest.mark.parametrize("name", ["sharpness", "hessian_trace", "hessian_spectral_density"])
def test_an_integer_generator_is_refused_with_the_fix(name):
    net, x, y = _problem()
    with pytest.raises(
        ValueError,
        match=rf"^{name}: generator must be a torch.Generator or None, "
        r"got int 3; pass generator=torch.Generator\(\).manual_seed\(3\)",
    ):
        PROBES[name](net, gs.losses.mse, (x, y), generator=3)


def test_a_decorator_that_fills_in_an_argument_is_taken():
    """``inspect.signature`` follows ``__wrapped__``; the loss as called is the wrapper."""
    import functools

    def weighted(out, target, weight):
        return weight * gs.losses.mse(out, target)

    @functools.wraps(weighted)
    def loss(out, target):
        return weighted(out, target, 2.0)

    net, x, y = _problem()
    doubled = gs.probes.sharpness(net, loss, (x, y), tol=1e-8)
    assert doubled == pytest.approx(2 * gs.probes.sharpness(net, gs.losses.mse, (x, y), tol=1e-8))


def test_chunks_split_targets_that_are_not_tensors():
    net, x, y = _problem()
    rows = [float(v) for v in y[:, 0]]

    def listed(out, target):
        return gs.losses.mse(out, torch.tensor(target, dtype=out.dtype).reshape(-1, 1))

    chunked = gs.probes.sharpness(net, listed, (x, rows), chunk_size=4, tol=1e-8)
    assert chunked == pytest.approx(gs.probes.sharpness(net, gs.losses.mse, (x, y), tol=1e-8))


def _made_in_inference_mode() -> torch.nn.Module:
    with torch.inference_mode():
        return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


@pytest.mark.parametrize(
    ("probe", "call"),
    [
        ("sharpness", lambda m, x, y: gs.probes.sharpness(m, gs.losses.mse, (x, y))),
        ("hessian_trace", lambda m, x, y: gs.probes.hessian_trace(m, gs.losses.mse, (x, y))),
        ("ntk_gram", lambda m, x, y: gs.probes.ntk_gram(m, x)),
        (
            "gradient_norm",
            lambda m, x, y: gs.probes.gradient_norm(
                m, dict(m.named_parameters()), gs.losses.mse, (x, y)
            ),
        ),
    ],
)
def test_a_model_made_in_inference_mode_is_named_with_the_fix(probe, call):
    """Review: torch's "Setting requires_grad=True on inference tensor outside InferenceMode"."""
    x, y = torch.randn(8, 6), torch.randn(8, 1)
    with pytest.raises(ValueError, match=rf"^{probe}: parameter '0\.weight' was made inside"):
        call(_made_in_inference_mode(), x, y)


def test_gradient_norms_arguments_in_the_curvature_probes_order_are_named():
    """``gradient_norm(model, params, loss_fn, batch)``; given the curvature probes' order it
    raised AttributeError: 'MSELoss' object has no attribute 'items'."""
    model, x, y = torch.nn.Linear(3, 1), torch.randn(4, 3), torch.randn(4, 1)
    params = dict(model.named_parameters())
    with pytest.raises(TypeError, match=r"params must map parameter names to tensors .* MSELoss"):
        gs.probes.gradient_norm(model, torch.nn.MSELoss(), params, (x, y))  # type: ignore[arg-type]


def test_integer_inputs_to_a_float_model_get_the_dtype_fix():
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.ones(4, 6, dtype=torch.long), torch.ones(4, 1)
    with pytest.raises(
        ValueError, match=r"inputs are torch\.int64 .* pass x\.to\(torch\.float32\)"
    ):
        gs.probes.sharpness(model, gs.losses.mse, (x, y))
