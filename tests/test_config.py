import pytest
import torch
from pydantic import ValidationError

import gdscope as gs
from gdscope._validation import format_errors
from gdscope.config.base import STORED
from gdscope.config.trial import canonical_hash
from gdscope.trials.networks import build_network, load_data


def test_hash_is_stable_and_content_based():
    a = gs.TrialConfig.model_validate({"model": {"width": 64}, "steps": 10})
    b = gs.TrialConfig.model_validate({"steps": 10, "model": {"width": 64}})
    c = gs.TrialConfig.model_validate({"model": {"width": 65}, "steps": 10})
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert len(a.content_hash()) == 64
    assert gs.TrialConfig.model_validate_json(a.model_dump_json()) == a


def test_config_is_immutable():
    cfg = gs.TrialConfig()
    with pytest.raises(ValidationError):
        cfg.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ({"model": {"widht": 3}}, ["model.widht", "did you mean 'width'"]),
        ({"optimzer": {}}, ["optimzer", "did you mean 'optimizer'"]),
        ({"model": {"width": "wide"}}, ["model.width", "'wide'"]),
        ({"optimizer": {"momentum": 1.0}}, ["optimizer.momentum", "[0, 1)", "got 1.0"]),
        ({"optimizer": {"lr": "auto"}}, ["optimizer.lr", "auto_kernel"]),
        ({"optimizer": {"lr": float("inf")}}, ["optimizer.lr", "finite"]),
        ({"stop": {"accuracy_at_least": 2}}, ["stop.accuracy_at_least", "got 2"]),
        ({"dtype": "float16"}, ["dtype", "'float32'", "'float64'"]),
        ({"device": "tpu"}, ["device", "'cuda:N'", "got 'tpu'"]),
        ({"optimizer": {"name": "gd", "momentum": 0.9}}, ["optimizer", "takes no momentum"]),
        ({"optimizer": {"name": "adam", "l1": 0.1}}, ["optimizer", "does not apply l1"]),
        ({"data": {"options": {"taget": "sign"}}}, ["data.options", "did you mean 'target'"]),
        ({"batch_size": 100, "data": {"n": 16}}, ["batch_size", "data.n=16", "(got 100)"]),
    ],
)
def test_validation_errors_name_field_and_value(raw, fragments):
    with pytest.raises(ValidationError) as info:
        gs.TrialConfig.model_validate(raw)
    message = format_errors(info.value, gs.TrialConfig, raw)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# Hashes recorded from the catalogue before ModelConfig gained late-added fields (readout, output
# options): stored results are found by these hashes, so they must never change.
PINNED_HASHES = [
    (
        {
            "model": {"kind": "mlp", "activation": "relu", "parameterization": "standard"}
            | {"depth": 3, "width": 4},
            "data": {"name": "sphere", "n": 32, "d": 8, "options": {"target": "sign"}},
            "optimizer": {"name": "gd", "lr": 0.1},
            "loss": "mse",
            "steps": 300,
            "probes": {"loss": 20, "train_error": 1},
            "stop": {"accuracy_at_least": 1.0},
            "seed": 0,
        },
        "f36d7c5b379c11d4a1a7e9bf69d1fd23455b82e268ad8476c7177a0829402c6e",
    ),
    (
        {
            "model": {"kind": "two_layer", "width": 1024, "init_scale": 1.0},
            "data": {"name": "sphere", "n": 16, "d": 8, "seed": 0},
            "optimizer": {"name": "gd", "lr": 1.0},
            "loss": "mse",
            "steps": 200,
            "dtype": "float64",
            "probes": {"loss": 20, "dist_from_init": 200},
            "seed": 0,
        },
        "3af940af00f038fd5e8c04c6fea45f0e51b4d29b07fbb711a6864e56ef87f247",
    ),
    (
        {
            "model": {"kind": "mlp", "depth": 2, "parameterization": "ntk", "width": 64},
            "data": {"name": "sphere", "n": 8, "d": 8, "seed": 0},
            "loss": "mse",
            "steps": 0,
            "dtype": "float64",
            "probes": {"output_hessian_norm": 1},
            "seed": 0,
        },
        # ntk with ReLU: its model changed with the ntk convention's revision 2, which enters the
        # hash (gdscope.models.parameterization.hash_revision); revision 1 hashed to bb78c15…
        "7d4496a3bb8680a07309f63f72fe8fcc3c2c465e122e4c16a2413bbb6ac466fb",
    ),
    (
        {
            "model": {"kind": "mlp", "width": 100, "depth": 2, "parameterization": "standard"}
            | {"init_scale": 0.2, "activation": "tanh"},
            "data": {"name": "chebyshev", "n": 20, "d": 4, "options": {"k": 5}},
            "optimizer": {"name": "gd", "lr": 0.5},
            "loss": "mse",
            "steps": 2000,
            "probes": {"loss": 10, "sharpness": 25},
            "seed": 0,
        },
        # the scheduled sharpness' tolerance revision (sharpness_tol 2); before: c3508da…
        "e8c9d4a983f6e8e6010c332939a5f847cd3d8b8ac09e985ee9830a2a38fe59da",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), PINNED_HASHES)
def test_existing_configs_keep_their_hash(raw, expected):
    """A stored config validates with its hash (``data.d = 4`` of chebyshev, refused since in a
    new config, is accepted as read back from a store)."""
    stored = gs.TrialConfig.model_validate(raw, context={STORED: True})
    assert stored.content_hash() == expected


def test_revised_conventions_give_new_hashes_and_leave_the_others():
    """Trials stored before Adam's P held 1 − β₁ᵗ, or before μP under Adam took TP-V's lr
    multipliers, are not resumed; a trial neither revision touches hashes as before."""

    def trial(parameterization, optimizer, probes):
        raw = {
            "model": {"kind": "mlp", "parameterization": parameterization},
            "optimizer": {"name": optimizer, "lr": 0.01},
            "probes": probes,
        }
        config = gs.TrialConfig.model_validate(raw)
        return config, config._revisions()

    assert trial("standard", "adam", {"loss": 1})[1] == {}
    assert trial("mup", "gd", {"loss": 1})[1] == {}
    assert trial("mup", "adam", {"loss": 1})[1] == {"mup_adaptive_lr": 2}
    decayed = gs.TrialConfig.model_validate(
        {"model": {"kind": "mlp", "parameterization": "meanfield"},
         "optimizer": {"name": "gd", "weight_decay": 0.1}}
    )  # fmt: skip
    assert decayed._revisions() == {"scaled_weight_decay": 2}
    assert trial("standard", "gd", {"sharpness": 5, "hessian_trace": 5})[1] == {
        "sharpness_tol": 2,
        "hessian_trace_draws": 2,
    }
    assert trial("standard", "gd", {"du_bound": 1})[1] == {"du_setting": 2, "du_bound_loss": 2}
    mse = gs.TrialConfig.model_validate({"loss": "mse", "probes": {"du_bound": 1}})
    assert mse._revisions() == {"du_setting": 2}  # the catalogue's du_bound trials: as before
    config, revisions = trial("standard", "adam", {"preconditioned_sharpness": 5})
    assert revisions == {"preconditioned_sharpness_convention": 2}
    plain = canonical_hash(
        {
            **config.model_dump(mode="json"),
            "model": config.model.hash_payload(),
            "data": config.data.hash_payload(),
            "optimizer": config.optimizer.hash_payload(),
        }
    )
    assert config.content_hash() != plain


@pytest.mark.parametrize(
    ("field", "value"),
    [("readout", "flatten")],
)
def test_late_added_model_fields_enter_the_hash_only_when_set(field, value):
    model = {"kind": "cnn", "width": 4}
    base = gs.TrialConfig.model_validate({"model": model})
    default = type(base.model).model_fields[field].default
    explicit = gs.TrialConfig.model_validate({"model": {**model, field: default}})
    changed = gs.TrialConfig.model_validate({"model": {**model, field: value}})
    assert explicit.content_hash() == base.content_hash() != changed.content_hash()


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        ({"kind": "mlp", "readout": "flatten"}, ["model", "readout", "'flatten'", "'cnn'"]),
        ({"kind": "cnn", "readout": "sum"}, ["model.readout", "'pool'", "'flatten'"]),
        ({"kind": "two_layer", "depth": 5}, ["model.depth = 5", "'two_layer'", "remove"]),
        ({"kind": "cnn", "bias": False}, ["model.bias = False", "'mlp'", "got kind 'cnn'"]),
        ({"kind": "mlp", "train_outer": True}, ["model.train_outer", "'two_layer'", "'mlp'"]),
        ({"kind": "cnn", "residual": True}, ["model.residual", "'mlp' or 'resnet'", "'cnn'"]),
    ],
)
def test_model_option_errors_name_field_value_and_fix(model, fragments):
    with pytest.raises(ValidationError) as info:
        gs.TrialConfig.model_validate({"model": model})
    message = format_errors(info.value, gs.TrialConfig, {"model": model})
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    "part",
    [{"optimizer": {"lr": True}}, {"optimizer": {"l1": False}}, {"model": {"init_scale": True}}],
)
def test_true_or_false_is_refused_where_a_number_is_wanted(part):
    raw = {"data": {"name": "sphere", "n": 8}, "steps": 1}
    with pytest.raises(ValueError, match="not true/false"):
        gs.TrialConfig.model_validate({**raw, **part})
    flagged = {"model": {"center_output": True}}  # a bool field still takes a bool
    assert gs.TrialConfig.model_validate({**raw, **flagged}).model.center_output is True


def test_preconditioned_sharpness_needs_an_adaptive_optimizer():
    with pytest.raises(ValidationError, match=r"optimizer\.name 'gd'; use one of adam, rmsprop"):
        gs.TrialConfig.model_validate({"probes": {"preconditioned_sharpness": 5}})
    adam = {"name": "adam", "lr": 0.01}
    cfg = gs.TrialConfig.model_validate(
        {"probes": {"preconditioned_sharpness": 5}, "optimizer": adam}
    )
    assert cfg.optimizer.name == "adam"


def test_meanfield_under_an_adaptive_optimizer_is_refused_at_validation():
    raw = {"model": {"kind": "mlp", "parameterization": "meanfield"}, "optimizer": {"name": "adam"}}
    with pytest.raises(
        ValidationError, match=r"no learning-rate rule under model\.parameterization"
    ):
        gs.TrialConfig.model_validate(raw)


def test_two_layer_reads_its_activation_under_a_new_hash():
    """A ``two_layer`` off ReLU was built with ReLU before; its trials hash anew, so a store
    written then does not resume from them, and a ReLU one hashes as before."""
    base = {"data": {"name": "sphere", "n": 8, "d": 3}, "steps": 1}
    relu, tanh = (
        gs.TrialConfig.model_validate({**base, "model": {"kind": "two_layer", "activation": a}})
        for a in ("relu", "tanh")
    )
    assert "two_layer_activation" not in relu.model.hash_payload()
    assert tanh.model.hash_payload()["two_layer_activation"] == 2
    cpu = torch.device("cpu")
    (x, _), _ = load_data(tanh, torch.float32, cpu)
    net = build_network(tanh, x, 1, torch.float32, cpu)
    assert isinstance(net, gs.models.TwoLayer) and isinstance(net.activation, torch.nn.Tanh)


def test_list_models_shows_each_kind_the_options_its_builder_reads(monkeypatch, capsys):
    from _helpers import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "list", "models")
    assert code == 0, err
    rows = {}
    for line in out.splitlines():  # a kind's row, then its wrapped continuation lines
        words = line.replace(",", " ").split()
        if words and words[0] in ("mlp", "two_layer", "cnn", "resnet", "custom"):
            kind, words = words[0], words[1:]
        elif not words or not rows:
            continue
        rows.setdefault(kind, set()).update(words)
    assert "depth" not in rows["two_layer"] and "bias" not in rows["two_layer"]
    assert {"width", "activation", "init_scale", "train_outer"} <= rows["two_layer"]
    assert "bias" not in rows["cnn"] and "residual" not in rows["cnn"] and "readout" in rows["cnn"]
    assert "residual" in rows["resnet"] and "readout" not in rows["mlp"]
