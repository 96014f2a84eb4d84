"""The ``ntk`` parameterization's convention (stated in gdscope.models.parameterization).

Unit-variance stored weights, the activation gain ``a`` (``√2`` for ReLU) in the forward
multiplier ``a/√n`` of the input and hidden layers, as neural-tangents' ``stax.Dense(W_std=a)``.
Then the gradients of the stored weights carry the gain, and the finite-width empirical NTK
converges to the analytic kernel of that convention like ``width^(-1/2)`` for every activation.
With the gain in the init std (``W ~ N(0, 2)``, multiplier ``1/√n``, gdscope before revision 2)
the ReLU kernel stayed 0.2–0.3 away from stax's at every width; the first three tests fail there.
The comparison with neural-tangents itself is in tests/test_peers.py.
"""

from __future__ import annotations

import math

import pytest

from _helpers import assert_close
from _ntk_limits import D_IN, DEPTH, REV1, SLOPE_BAND, empirical_errors, inputs, slope
from gdscope.config import TrialConfig
from gdscope.config.parts import ModelConfig
from gdscope.models import mlp
from gdscope.models.layers import ScaledLinear
from gdscope.models.parameterization import NTK, hash_revision
from gdscope.probes.infinite_width import layer_constants, ntk_infinite


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("role", ["input", "hidden", "output"])
def test_ntk_layers_put_the_gain_in_the_multiplier(role, activation):
    gain = math.sqrt(2.0) if activation == "relu" and role != "output" else 1.0
    spec = NTK.layer(role, 100, activation_gain=math.sqrt(2.0) if activation == "relu" else 1.0)
    assert spec.init_std == 1.0
    assert_close(spec.multiplier, gain / 10, rtol=1e-15, atol=1e-12)
    assert (spec.bias_std, spec.bias_multiplier) == (1.0, NTK.bias_scale)
    scaled = NTK.layer(role, 100, activation_gain=1.0, init_scale=1.5)  # init_scale: the std
    assert (scaled.init_std, scaled.multiplier) == (1.5, 0.1)


def test_ntk_relu_mlp_stores_unit_variance_weights():
    model = mlp(D_IN, 1024, depth=DEPTH, activation="relu", parameterization="ntk", seed=0)
    hidden, readout = model.layers[1], model.layers[-1]
    assert isinstance(hidden, ScaledLinear) and isinstance(readout, ScaledLinear)
    assert abs(float(hidden.weight.detach().std()) - 1.0) < 0.01  # 2**20 draws: std error 7e-4
    assert_close(hidden.multiplier, math.sqrt(2.0 / 1024), rtol=1e-12, atol=1e-12)
    assert_close(readout.multiplier, 1 / math.sqrt(1024), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_ntk_kernel_of_the_stored_weights_is_the_unit_weight_kernel(activation, bias):
    stored = layer_constants(DEPTH, D_IN, activation=activation, bias=bias)
    unit = layer_constants(DEPTH, D_IN, activation=activation, bias=bias, wrt="unit")
    assert_close(stored, unit, rtol=1e-14, what="stored constants")
    a2 = 2.0 if activation == "relu" else 1.0  # v = w = gain² on input and hidden layers
    assert_close([c.w for c in stored], [a2, a2, 1.0], rtol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_finite_width_ntk_converges_to_the_analytic_kernel_like_root_width(activation):
    theta = ntk_infinite(inputs(), depth=DEPTH, activation=activation).ntk
    errors = empirical_errors(activation, theta)
    # measured: slopes −0.52 (ReLU), −0.50 (tanh), −0.55 (GELU); errors 0.06–0.10 at 1024
    assert SLOPE_BAND[0] <= slope(errors) <= SLOPE_BAND[1], errors
    assert errors[-1] < 0.15, errors
    # and it can fail: the limit of revision 1's network (the gain in the init std: forward
    # variance v = a², weight-gradient scale w = 1) is another kernel, and the error to it
    # stops falling for ReLU
    if activation == "relu":
        other = ntk_infinite(inputs(), depth=DEPTH, activation="relu", parameterization=REV1).ntk
        other_errors = empirical_errors("relu", other)
        assert slope(other_errors) > SLOPE_BAND[1] and other_errors[-1] > 0.2, other_errors


def test_only_models_the_revision_changed_hash_differently():
    def payload(**model):
        return ModelConfig(**model).hash_payload()

    assert payload(parameterization="ntk")["ntk_convention"] == 2  # ReLU is the default
    assert payload(parameterization="ntk", kind="cnn")["ntk_convention"] == 2
    for unchanged in (
        {"parameterization": "ntk", "activation": "tanh", "init_scale": 2.0},
        {"parameterization": "ntk", "depth": 1},  # the readout alone takes no gain
        {"parameterization": "standard"},
        {"parameterization": "mup"},
        {"parameterization": "meanfield"},
        {"kind": "two_layer"},
    ):
        assert "ntk_convention" not in payload(**unchanged), unchanged
    assert hash_revision("ntk", 1.0) == {} and hash_revision("standard", 2.0) == {}
    ntk = TrialConfig.model_validate({"model": {"parameterization": "ntk"}})
    standard = TrialConfig.model_validate({"model": {"parameterization": "standard"}})
    # the store's key of a default standard trial, as written before revision 2 (2026-12-04)
    assert standard.content_hash() == STANDARD_DEFAULT_HASH
    assert ntk.content_hash() != NTK_RELU_DEFAULT_HASH_REVISION_1


STANDARD_DEFAULT_HASH = "406e3447cec3fadda7d97a6376f5f4fc01df329da0430a06852dbe052cf536ad"
NTK_RELU_DEFAULT_HASH_REVISION_1 = (
    "ba686e076627e681081d4ae802972388bca7e14300cf417ed3ae24fe8a48b369"
)


def test_revision_1_is_the_previous_stored_weight_kernel():
    # what gdscope computed before (tests/test_infinite_width.py, 2026-12-04): v = 2, w = 1
    hidden = layer_constants(DEPTH, D_IN, activation="relu", parameterization=REV1)[1]
    assert_close(hidden, (2.0, 1.0, 0.01, 0.01), rtol=1e-14)
