"""``gdscope --import MODULE`` and ``GDSCOPE_IMPORT``: a fresh ``gdscope`` sees the user's code."""

import sys
import textwrap

import pytest

from _helpers import run_cli
from gdscope import registration
from gdscope.store import Store
from gdscope.training.user_probes import registered_probes, unregister_probe

MODULE = "impnets"
USER_CODE = '''
import torch
from torch import nn

import gdscope as gs


def make_net(width=8):
    return nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 1))


def make_data(n=16, seed=0):
    """Gaussian inputs in 5 dimensions, Gaussian targets."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randn(n, generator=g)


def weight_norm(ctx):
    return {"weight_norm": float(sum(p.pow(2).sum() for p in ctx.params.values()) ** 0.5)}


gs.register_model("imp_net", make_net)
gs.register_dataset("imp_data", make_data)
gs.register_probe("imp_weight_norm", weight_norm, metrics=["weight_norm"])
'''
STUDY = """
name = "imported"
seeds = [0, 1]
[base]
steps = 5
loss = "mse"
probes = { loss = 1, imp_weight_norm = 5 }
"optimizer.lr" = 0.05
[base.model]
kind = "imp_net"
args = { width = 4 }
[base.data]
name = "imp_data"
n = 12
[sweep]
"model.args.width" = [4, 8]
[[claims]]
id = "weights-move-little"
kind = "within"
y = { reduce = "final_over_initial", metric = "weight_norm" }
band = [0.5, 1.5]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The current directory holds ``impnets.py`` (registering on import) and a study on it.

    ``sys.path``, the imported user modules and every registry are as before after the test.
    """
    (tmp_path / f"{MODULE}.py").write_text(USER_CODE)
    (tmp_path / "study.toml").write_text(STUDY)
    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('no GPU here')\n")
    (tmp_path / "needs.py").write_text("import not_installed_anywhere\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("GDSCOPE_IMPORT", raising=False)
    saved = {r.what: dict(r._entries) for r in registration._REGISTRIES.values()}
    probes = set(registered_probes())
    yield tmp_path
    for name in (MODULE, "broken", "needs"):
        sys.modules.pop(name, None)
    for registry in registration._REGISTRIES.values():
        registry._entries.clear()
        registry._entries.update(saved[registry.what])
    for name in set(registered_probes()) - probes:
        unregister_probe(name)


def test_import_runs_a_study_on_the_users_code_with_two_workers(project, monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch, capsys, "--import", MODULE, "run", "study.toml", "--workers", "2",
        "--results", "r",
    )  # fmt: skip
    assert code == 0, err
    assert "4 trials (4 run, 0 failed)" in err and "PASS" in out
    store = Store(project / "r")
    [(verdict)] = store.verdicts()
    assert verdict["status"] == "PASS" and verdict["n_points"] == 4, verdict


def test_without_import_the_names_are_unknown(project, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "run", "study.toml", "--results", "r")
    assert code == 2 and "unknown model kind 'imp_net'" in err
    assert not (project / "r").exists()


@pytest.mark.parametrize("value", [MODULE, f"./{MODULE}.py", f"{MODULE}.py"])
def test_the_environment_variable_takes_names_and_paths(project, monkeypatch, capsys, value):
    monkeypatch.setenv("GDSCOPE_IMPORT", f" {value}, ")
    code, out, err = run_cli(monkeypatch, capsys, "list", "models")
    assert code == 0, err
    assert "imp_net" in out and f"{MODULE}:make_net" in out
    assert sys.modules[MODULE].__file__ == str(project / f"{MODULE}.py")
    code, out, err = run_cli(
        monkeypatch, capsys, "train", "--model", "imp_net", "--data", "imp_data", "--n", "8",
        "--steps", "3", "--loss", "mse", "--probe", "imp_weight_norm=3",
    )  # fmt: skip
    assert code == 0, err
    assert "status: completed after 3 steps" in out and "weight_norm" in out


def test_a_path_from_another_folder_can_import_its_siblings(project, monkeypatch, capsys):
    lab = project / "lab"
    lab.mkdir()
    (lab / "helpers.py").write_text("WIDTH = 3\n")
    (lab / "labnets.py").write_text(
        "import helpers\nimport gdscope as gs\nfrom impnets import make_net\n\n\n"
        "def narrow():\n    return make_net(helpers.WIDTH)\n\n\n"
        "gs.register_model('lab_net', narrow)\n"
    )
    code, out, err = run_cli(
        monkeypatch, capsys, "--import", "lab/labnets.py", "--import", MODULE, "list", "models"
    )
    try:
        assert code == 0, err
        assert "labnets:narrow" in out
    finally:
        for name in ("labnets", "helpers"):
            sys.modules.pop(name, None)


BAD = [
    (["--import", "nomodule"], "--import: 'nomodule' does not import: no module 'nomodule' in"),
    (["--import", "broken"], "--import: 'broken' raised RuntimeError at {dir}/broken.py:2 when "
     "imported (no GPU here); fix the module so that importing it succeeds"),
    (["--import", "needs"], "--import: 'needs' raised ModuleNotFoundError at {dir}/needs.py:1"),
    (["--import", "gone/nets.py"], "--import: 'gone/nets.py' does not exist ({dir}/gone/nets.py)"),
    (["--import", "study.toml"], "--import: 'study.toml' is not a .py file ({dir}/study.toml)"),
    (["--import", "my-nets"], "--import: 'my-nets' is neither a dotted module name nor a path"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_a_module_that_does_not_import_is_one_line_exit_2_nothing_written(
    project, monkeypatch, capsys, argv, message
):
    code, out, err = run_cli(monkeypatch, capsys, *argv, "run", "study.toml", "--results", "r")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {message.format(dir=project)}"), err
    assert len(err.strip().splitlines()) == 1
    assert "or a path to a .py file" in err or "fix the module" in err
    assert not (project / "r").exists()


def test_a_bad_environment_variable_names_itself(project, monkeypatch, capsys):
    monkeypatch.setenv("GDSCOPE_IMPORT", f"{MODULE},broken")
    code, out, err = run_cli(monkeypatch, capsys, "list", "models")
    assert code == 2 and out == ""
    assert err.startswith("error: GDSCOPE_IMPORT: 'broken' raised RuntimeError"), err


def test_the_help_documents_the_option(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "--help")
    text = " ".join(out.split())
    assert code == 0 and "--import" in text and "GDSCOPE_IMPORT" in text
    assert textwrap.shorten("a path to a .py file", 40) in text
