"""A store written before unread fields were marked null reads as the current format.

Before eed4729 a trial's stored config held every field as it was (``model.width = 256`` of a
custom model, ``data.n = 64`` of a data factory); since then ``model_dump`` marks them ``null``,
under the same content hash. A review found two consequences on such a store: the "N stored
trials replaced: mynets.py changed since they ran" reason was lost (the factory key of an old
stored config never matched the new expansion's), and a store holding both formats (an old
study given more seeds) made the report see 11 model options vary and label trials
"activation=None, bias=None, …", and the export mix 256 and empty in ``model.width``.

The old format is written here as the old code wrote it: ``model_dump`` without the marks
(``unread_fields`` returning none), under the same hashes.
"""

import csv
import importlib
import json
import sqlite3
import sys
from contextlib import closing
from typing import Any

import pytest

import gdscope as gs
from _helpers import registries_restored, user_module
from gdscope import registration
from gdscope._stored_form import stored_form
from gdscope.config import DataConfig, ModelConfig, TrialConfig
from gdscope.config.base import EVERY_FIELD
from gdscope.report import labels
from gdscope.report.collect import collect
from gdscope.store import Store
from gdscope.store.diff import diff_stores
from gdscope.store.export import write_csv
from gdscope.trials.user_code import changed_factories

NETS = """
import torch


def make_net(width=8):
    return torch.nn.Sequential(
        torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
    )


def make_data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randn(n, generator=g)


def sized(n=40, d=4, seed=0):
    return make_data(n, seed)


def needs_n(n, seed=0):
    return make_data(n, seed)


def no_sizes(seed=0):
    return make_data(10, seed)
"""


def _study(seeds: str) -> str:
    return (
        f'name = "old"\nseeds = {seeds}\n[base]\nsteps = 2\nloss = "mse"\n'
        '"optimizer.name" = "gd"\n"optimizer.lr" = 0.1\n"data.d" = 4\n'
        '[base.model]\nkind = "custom"\nfactory = "fmtnets:make_net"\n'
        '[[claims]]\nid = "c"\nkind = "within"\ny = { reduce = "final", metric = "loss" }\n'
        "band = [0, 100]\n"
    )


@pytest.fixture
def user(tmp_path, monkeypatch):
    """``fmtnets.py`` in the current directory; its model and loaders registered by name."""
    user_module(tmp_path, monkeypatch, "fmtnets", NETS)
    module = importlib.import_module("fmtnets")
    with registries_restored():
        gs.register_model("fmt_net", module.make_net)
        for loader in (module.sized, module.needs_n, module.no_sizes):
            gs.register_dataset(loader.__name__, loader)
        yield module
    sys.modules.pop("fmtnets", None)


def _old_format(monkeypatch):
    """Make ``model_dump`` write every field, as gdscope did before the marks (same hashes)."""
    for part in (ModelConfig, DataConfig):
        monkeypatch.setattr(part, "unread_fields", lambda self: ())


def _stored(results) -> list[dict]:
    with closing(sqlite3.connect(results / "gdscope.sqlite")) as conn:
        return [json.loads(c) for (c,) in conn.execute("SELECT config_json FROM trials")]


def test_an_edited_factory_is_named_on_a_store_written_before_the_marks(
    user, tmp_path, monkeypatch
):
    study, results = tmp_path / "old.toml", tmp_path / "res"
    study.write_text(_study("[0, 1]"))
    with monkeypatch.context() as old:
        _old_format(old)
        assert gs.run_study(study, results=results).ran == 2
    assert {c["model"]["width"] for c in _stored(results)} == {256}  # the old format
    (tmp_path / "fmtnets.py").write_text(NETS + "\n# edited\n")
    again = gs.run_study(study, results=results)
    assert again.ran == 2
    assert again.rerun == "2 stored trials replaced: fmtnets.py changed since they ran"


def test_changed_factories_keys_an_old_format_config_as_the_new_one(user, tmp_path):
    raw = {"model": {"kind": "custom", "factory": "fmtnets:make_net"}, "loss": "mse"}
    before = TrialConfig.model_validate(raw)
    (tmp_path / "fmtnets.py").write_text(NETS + "\n# edited\n")
    now = TrialConfig.model_validate(raw).model_dump(mode="json")
    stale = before.model_dump(mode="json", context={EVERY_FIELD: True})  # stored before the marks
    why = "1 stored trials replaced: fmtnets.py changed since they ran"
    assert changed_factories([stale], [now]) == why


def test_a_store_holding_both_formats_reads_as_one(user, tmp_path, monkeypatch):
    study, results = tmp_path / "old.toml", tmp_path / "res"
    study.write_text(_study("[0, 1]"))
    with monkeypatch.context() as old:
        _old_format(old)
        assert gs.run_study(study, results=results).ran == 2
    study.write_text(_study("[0, 1, 2]"))  # more seeds: two trials resumed, one run
    assert gs.run_study(study, results=results).ran == 1
    widths = sorted(c["model"]["width"] or 0 for c in _stored(results))
    assert widths == [0, 256, 256]  # both formats stored (never rewritten)

    store = Store(results)
    (view,) = [v for v in collect(store) if v.name == "old"]
    assert view.axes == []  # no model option "varies"
    assert all("None" not in labels.trial(r, view.axes) for r in view.records)
    assert {r.config["model.width"] for r in view.records} == {None}
    assert {t["config"]["model"]["activation"] for t in view.trials} == {None}
    write_csv(store, tmp_path / "long.csv")
    with (tmp_path / "long.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["model.width"], r["model.activation"], r["data.n"]) for r in rows} == {
        ("", "", "64")
    }
    assert sorted(c["model"]["width"] or 0 for c in _stored(results)) == widths  # read only


class _Trace:
    """Just what Store.record_trial reads from a finished trial."""

    status, reason, steps, wall_time_s = "completed", "ran 1 step", 1, 0.01

    def rows(self):
        return [(0, "loss", 1.0), (1, "loss", 0.5)]


def test_diff_finds_no_difference_between_the_two_formats_of_one_trial(user, tmp_path):
    raw = {"model": {"kind": "custom", "factory": "fmtnets:make_net"}, "loss": "mse"}
    config = TrialConfig.model_validate(raw)
    forms = {"old": {EVERY_FIELD: True}, "new": None}
    for name, context in forms.items():
        stored = config.model_dump(mode="json", context=context)
        trace: Any = _Trace()
        Store(tmp_path / name).record_trial("s", "quick", stored, config.content_hash(), trace)
    assert diff_stores(tmp_path / "old", tmp_path / "new") == []


# (trial config, registered by name in this process) for stored_form == model_dump
CONFIGS = [
    {},
    {"model": {"kind": "mlp", "width": 32, "depth": 2, "activation": "tanh", "bias": False}},
    {"model": {"kind": "two_layer", "width": 16, "train_outer": True}},
    {"model": {"kind": "cnn", "readout": "flatten"}, "data": {"name": "sphere_images"}},
    {"model": {"kind": "resnet", "residual": False}, "data": {"name": "sphere_images"}},
    {"model": {"kind": "custom", "factory": "fmtnets:make_net", "args": {"width": 4}}},
    {
        "model": {"kind": "custom", "factory": "fmtnets:make_net", "output_scale": 2.0},
        "data": {"name": "custom", "factory": "fmtnets:make_data", "args": {"n": 8}},
    },
    {"data": {"name": "custom", "factory": "fmtnets:make_data"}},
    {"model": {"kind": "fmt_net", "args": {"width": 3}}, "data": {"name": "sized"}},
    {"model": {"kind": "fmt_net"}, "data": {"name": "sized", "n": 7, "d": 4}},
    {"model": {"kind": "fmt_net"}, "data": {"name": "needs_n", "n": 9}},
    {"model": {"kind": "fmt_net"}, "data": {"name": "no_sizes"}},
    {"data": {"name": "teacher_student", "n": 32, "d": 8, "options": {"teacher_width": 4}}},
    {"data": {"name": "digits", "n": 32}},
    {"data": {"name": "chebyshev", "n": 20, "options": {"k": 3}}},
]


@pytest.mark.parametrize("raw", CONFIGS)
def test_stored_form_of_the_old_format_is_what_model_dump_writes_now(user, raw):
    config = TrialConfig.model_validate({**raw, "loss": "mse", "steps": 1})
    old = config.model_dump(mode="json", context={EVERY_FIELD: True})  # every field, as before
    new = config.model_dump(mode="json")
    assert stored_form(old) == new
    assert stored_form(new) == new  # the current format reads as it is
    assert json.dumps(stored_form(old)) == json.dumps(new)  # key order too
    assert TrialConfig.model_validate(stored_form(old)).content_hash() == config.content_hash()


def test_stored_form_leaves_other_configs_and_missing_fields_as_they_are():
    monitored = {"kind": "monitor", "run": "r", "model": {"class": "Net", "parameters": 3}}
    assert stored_form(monitored) == monitored
    partial = {"model": {"kind": "custom", "width": 256}, "data": {"name": "custom", "n": 64}}
    assert stored_form(partial) == {
        "model": {"kind": "custom", "width": None},
        "data": {"name": "custom", "n": None},
    }  # fields a store of configs as written (not validated) lacks stay absent
    assert partial["model"]["width"] == 256  # the argument is not changed


def test_a_loader_not_registered_here_keeps_its_stored_sizes(user):
    """Documented limit: which sizes a registered loader takes is its signature's to say."""
    old = {"model": {"kind": "fmt_net", "width": 256}, "data": {"name": "needs_n", "n": 9, "d": 16}}
    assert stored_form(old)["data"] == {"name": "needs_n", "n": 9, "d": None}
    registration.DATASET_REGISTRY.unregister("needs_n")
    assert stored_form(old) == {**old, "model": {"kind": "fmt_net", "width": None}}


def test_a_size_the_writing_loader_read_stays_when_another_is_registered_under_its_name(user):
    """Review: a loader registered again (``replace=True``) without ``d`` nulled the ``d = 3``
    and ``d = 5`` its predecessor read; a size off gdscope's default was read, and stays."""
    assert DataConfig().n == 64 and DataConfig().d == 16  # _stored_form.SIZE_DEFAULTS
    rows = [
        TrialConfig.model_validate({"data": {"name": "sized", "d": d}, "model": {"width": 8}})
        for d in (3, 5)
    ]
    stored = [json.loads(json.dumps(row.model_dump(mode="json"))) for row in rows]
    gs.register_dataset("sized", user.needs_n, replace=True)  # takes n, not d
    assert [stored_form(config)["data"]["d"] for config in stored] == [3, 5]
    old_default = {"data": {"name": "sized", "n": 40, "d": 16}}  # as a store before the marks
    assert stored_form(old_default)["data"]["d"] is None
