"""A registered loader keeps its own defaults; a stored config marks null what user code never read.

Review D #7: ``data.name`` registered by name got gdscope's ``n = 64``, ``d = 16`` over the
loader's own defaults, and the stored config of a custom or registered model / data factory
recorded ``model.width``, ``data.n``… that were never used.
"""

import csv
import importlib
import sys

import pytest
import torch
from pydantic import ValidationError

import gdscope as gs
from _helpers import registries_restored, user_module
from gdscope._validation import format_errors
from gdscope.config import TrialConfig
from gdscope.ensemble import group_trials
from gdscope.store import Store
from gdscope.store.export import write_csv
from gdscope.trials.networks import load_data

SOURCE = """
import torch
from torch import nn


def sized(n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, generator=g)


def needs_n(n, seed=0):
    return sized(n, 3, seed)


def all_rows(n=None, seed=0):
    return sized(30 if n is None else n, 3, seed)


def net(width=8):
    return nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 1))
"""

CUSTOM = {
    "model": {"kind": "custom", "factory": "defaults_user:net", "args": {"width": 4}},
    "data": {"name": "custom", "factory": "defaults_user:sized", "args": {"n": 12}},
}
REGISTERED = {"model": {"kind": "user_net"}, "data": {"name": "needs_n"}}
SIZES_SET = {"model": {"kind": "user_net"}, "data": {"name": "sized", "n": 64, "d": 16}}

# Hashes before the fix: the configs whose trials compute what they did keep them.
PINNED = [
    (CUSTOM, "8dcf009f8589e5144b6b571347205c2f939c181a6785e875ab1b770a09092e6e"),
    (REGISTERED, "4f880d756badfc36027eed9abbf10e952af5aee67da2e5378c73f75a1dab4456"),
    (SIZES_SET, "a73776825930e8af39cfe82f7b97af795e21b0e2cb702d51de10b7aa101fc3b4"),
]


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The module ``defaults_user`` beside the current directory, its functions registered."""
    user_module(tmp_path, monkeypatch, "defaults_user", SOURCE)
    module = importlib.import_module("defaults_user")
    with registries_restored():
        gs.register_model("user_net", module.net)
        for loader in (module.sized, module.needs_n, module.all_rows):
            gs.register_dataset(loader.__name__, loader)
        yield module
    sys.modules.pop("defaults_user", None)


def _trial(raw, **extra):
    return TrialConfig.model_validate({**raw, "loss": "mse", "steps": 3, **extra})


def _shape(config):
    (x, _), _ = load_data(config, torch.float32, torch.device("cpu"))
    return tuple(x.shape)


def test_a_registered_loader_keeps_its_own_defaults_unless_the_config_sets_them(user):
    unset = _trial({"model": {"kind": "user_net"}, "data": {"name": "sized"}})
    assert _shape(unset) == (40, 3)
    assert (unset.data.n, unset.data.d) == (40, 3)  # the config records what the loader used
    assert _shape(_trial({"data": {"name": "sized", "n": 10, "d": 2}})) == (10, 2)
    none_default = _trial({"model": {"kind": "user_net"}, "data": {"name": "all_rows"}})
    assert none_default.data.n is None and _shape(none_default) == (30, 3)
    assert _shape(_trial(REGISTERED)) == (64, 3)  # no default of its own: gdscope's, as before
    explicit = _trial({"model": {"kind": "user_net"}, "data": {"name": "sized", "n": 64}})
    assert explicit.content_hash() != unset.content_hash()  # they train on different data


@pytest.mark.parametrize(("raw", "expected"), PINNED)
def test_trials_that_compute_what_they_did_keep_their_hash(user, raw, expected):
    assert _trial(raw).content_hash() == expected


def test_the_stored_config_marks_null_what_user_code_never_read(user):
    custom, registered = _trial(CUSTOM), _trial(REGISTERED)
    model, data = (custom.model_dump(mode="json")[part] for part in ("model", "data"))
    assert {model[k] for k in ("width", "depth", "activation", "init_scale")} == {None}
    assert {data[k] for k in ("n", "d", "options")} == {None}
    assert model["args"] == {"width": 4} and data["args"] == {"n": 12}
    model, data = (registered.model_dump(mode="json")[part] for part in ("model", "data"))
    assert (model["width"], data["n"], data["d"]) == (None, 64, None)
    for config in (custom, registered):  # a stored config reads back as the same trial
        again = TrialConfig.model_validate_json(config.model_dump_json())
        assert again == config and again.content_hash() == config.content_hash()
    model, data = (TrialConfig().model_dump(mode="json")[part] for part in ("model", "data"))
    assert (model["width"], data["n"], data["d"]) == (256, 64, 16)  # built-in: as before
    seeds = [_trial(CUSTOM, seed=seed) for seed in (0, 1)]
    assert group_trials(seeds) == [[0, 1]]  # an ensemble still groups them


def test_a_size_a_registered_loader_does_not_take_is_refused_in_one_line(user):
    raw = {**REGISTERED, "data": {"name": "needs_n", "d": 8}}
    with pytest.raises(ValidationError) as info:
        TrialConfig.model_validate(raw)
    message = format_errors(info.value, TrialConfig, raw)
    assert "data.d = 8: data set 'needs_n' takes no 'd'" in message
    assert "remove data.d" in message and len(message.splitlines()) == 1


def test_the_export_leaves_unread_fields_empty_and_a_rerun_resumes(user, tmp_path):
    study = tmp_path / "mine.toml"
    study.write_text(
        'name = "mine"\nseeds = [0]\n[base]\nsteps = 3\nloss = "mse"\nprobes = { loss = 1 }\n'
        '[base.model]\nkind = "user_net"\n[base.data]\nname = "sized"\n'
        '[[claims]]\nid = "c"\nkind = "within"\ny = { reduce = "final", metric = "loss" }\n'
        "band = [0, 100]\n"
    )
    assert gs.run_study(study, results=tmp_path / "out").ran == 1
    assert gs.run_study(study, results=tmp_path / "out").ran == 0  # resumed, not rerun
    write_csv(Store(tmp_path / "out"), tmp_path / "long.csv")
    with (tmp_path / "long.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert (row["model.width"], row["data.n"], row["data.d"]) == ("", "40", "3")


def test_gdscope_train_leaves_a_registered_loader_its_own_sizes(user, monkeypatch, capsys):
    """``gdscope train`` passes ``--n``/``--d`` only when given (it passed 64 and 16 always)."""
    import json

    from _helpers import run_cli

    def data_of(*extra: str) -> dict:
        args = ["train", "--model", "user_net", "--data", "sized", "--steps", "1", "--json"]
        code, out, err = run_cli(monkeypatch, capsys, *args, *extra)
        assert code == 0, err
        return json.loads(out)["config"]["data"]

    assert (data_of()["n"], data_of()["d"]) == (40, 3)
    assert (data_of("--n", "7")["n"], data_of("--n", "7")["d"]) == (7, 3)


def test_gdscope_train_passes_arg_to_a_registered_models_function(user, monkeypatch, capsys):
    """``--width`` is refused for a registered kind ("pass it … as model.args.width"), and the
    command had no way to set ``model.args``: ``--arg KEY=VALUE`` does."""
    import json

    from _helpers import run_cli

    args = ["train", "--model", "user_net", "--data", "sized", "--steps", "1", "--json"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--arg", "width=4")
    assert code == 0, err
    assert json.loads(out)["config"]["model"]["args"] == {"width": 4}
    code, _, err = run_cli(monkeypatch, capsys, *args, "--width", "4")
    assert code == 2 and "model.args.width" in err
