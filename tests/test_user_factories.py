"""Studies on a user's own model and data: ``model.kind = "custom"`` and ``data.name = "custom"``."""

import json
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing

import pytest
import torch

from gdscope.cli import main
from gdscope.config import TrialConfig
from gdscope.factories import FactoryRef
from gdscope.trials.trial import run_trial

NETS = """
import torch
from torch import nn


class SmallConv(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.GroupNorm(2, width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(2, width), nn.ReLU(),
        )
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


class Attention(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp = nn.Linear(4, width)
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.inp(x.reshape(x.shape[0], -1, 4))
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.out(a.mean(1))


def make_conv(width=4):
    return SmallConv(width)


def make_attention(width=4):
    return Attention(width)


def make_broken(width=4):
    raise RuntimeError("no such net")


def make_number(width=4):
    return 3
"""

DATA = """
import torch


def make_images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g), torch.randn(n, generator=g)


def make_flat(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"train": (torch.randn(n, 5, generator=g), torch.randn(n, generator=g))}


def make_text(n=24):
    return "not data"
"""


def _study(name: str, net: str = "mynets:make_conv", data: str = "mydata:make_images") -> str:
    return textwrap.dedent(f'''
        name = "{name}"
        seeds = [0, 1]

        [base]
        steps = 20
        loss = "mse"
        "optimizer.name" = "gd"
        "optimizer.lr" = 0.05
        probes = {{ loss = 5, sharpness = 20 }}

        [base.model]
        kind = "custom"
        factory = "{net}"
        args = {{ width = 4 }}

        [base.data]
        name = "custom"
        factory = "{data}"
        args = {{ n = 24 }}

        [sweep]
        "model.args.width" = [4, 8]

        [[claims]]
        id = "loss-falls"
        kind = "within"
        description = "the training loss falls"
        y = {{ reduce = "final_over_initial", metric = "loss" }}
        band = [0, 0.999]
    ''')


@pytest.fixture
def project(tmp_path):
    """A user's folder: a model module, a data module and study files beside them."""
    (tmp_path / "mynets.py").write_text(NETS)
    (tmp_path / "mydata.py").write_text(DATA)
    (tmp_path / "conv.toml").write_text(_study("my-conv"))
    (tmp_path / "attention.toml").write_text(_study("my-attention", "mynets:make_attention"))
    return tmp_path


def _gdscope(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gdscope", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _trials(results) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(results / "gdscope.sqlite")) as conn:
        return conn.execute("SELECT hash, study, status FROM trials ORDER BY hash").fetchall()


@pytest.mark.slow  # ~20-40 s; the default run stays under 10 minutes
def test_a_study_on_a_users_convnet_and_attention_model_runs_and_reruns_after_an_edit(project):
    results = project / "results"
    out = _gdscope(
        "run", str(project / "conv.toml"), str(project / "attention.toml"), "--results",
        str(results), "--workers", "2", "--no-report", cwd="/",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "paper claims: 2 PASS, 0 FAIL, 0 INCONCLUSIVE" in out.stdout
    first = _trials(results)
    assert len(first) == 8 and {status for _, _, status in first} == {"completed"}
    with closing(sqlite3.connect(results / "gdscope.sqlite")) as conn:
        sharp = conn.execute(
            "SELECT count(*) FROM series s JOIN trials t ON t.hash = s.trial_hash "
            "WHERE t.study = 'my-attention' AND s.metric = 'sharpness' AND s.value > 0"
        ).fetchone()[0]
        config = conn.execute("SELECT config_json FROM trials LIMIT 1").fetchone()[0]
    assert sharp == 8  # attention's Hessian (math-kernel fallback), at steps 0 and 20
    assert str(project / "mynets.py") in config  # the store says which file built the model

    (project / "mynets.py").write_text(NETS + "\n# edited\n")
    out = _gdscope("run", str(project / "conv.toml"), "--results", str(results), "--no-report")
    assert out.returncode == 0, out.stderr
    assert "4 trials (4 run, 0 failed)" in out.stderr  # the edit reran every conv trial
    assert "4 stored trials replaced: mynets.py changed since they ran" in out.stderr
    again = _trials(results)
    assert len(again) == 12 and set(first) <= set(again)  # old trials kept, new ones added
    with closing(sqlite3.connect(results / "gdscope.sqlite")) as conn:
        linked = conn.execute("SELECT count(*) FROM study_trials WHERE study = 'my-conv'")
        assert linked.fetchone()[0] == 4  # the study now holds only the trials of the new code
        stored = json.loads(conn.execute("SELECT config_json FROM trials LIMIT 1").fetchone()[0])
    assert len(stored["model"]["factory"]["sha256"]) == 64  # which version of the code ran
    out = _gdscope("run", str(project / "conv.toml"), "--results", str(results), "--no-report")
    assert "4 trials (0 run, 0 failed)" in out.stderr  # unchanged code: resumed, nothing rerun


@pytest.mark.parametrize(
    ("net", "data", "fragments"),
    [
        ("nomodule:make", "mydata:make_images", ["no module 'nomodule'"]),
        (
            "mynets:make_missing",
            "mydata:make_images",
            ["has no function 'make_missing'; its functions: "],
        ),
        ("mynets:make_broken", "mydata:make_images", ["raised RuntimeError: no such net"]),
        ("mynets:make_number", "mydata:make_images", ["returned a int, not a torch.nn.Module"]),
        ("mynets:make_conv", "mydata:make_text", ["returned a str; return (x, y)"]),
        ("mynets:make_conv", "mydata:make_flat", ["the model fails on inputs of shape (2, 5)"]),
    ],
)
def test_a_bad_factory_is_one_line_naming_the_study_file_exit_2_nothing_written(
    project, net, data, fragments, monkeypatch, capsys
):
    study = project / "bad.toml"
    study.write_text(_study("bad", net, data))
    results = project / "results"
    for extra in ([], ["--dry-run"]):
        monkeypatch.setattr(
            sys, "argv", ["gdscope", "run", str(study), "--results", str(results), *extra]
        )
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2
        message = capsys.readouterr().err.strip()
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"error: {study}: ")
        for fragment in fragments:
            assert fragment in message
        assert not results.exists()


def test_custom_options_go_through_args(project):
    with pytest.raises(ValueError, match=r"pass it to your factory as model\.args\.width"):
        TrialConfig.model_validate(
            {"model": {"kind": "custom", "factory": "json:dumps", "width": 8}}
        )
    with pytest.raises(ValueError, match="apply to kind 'custom'"):
        TrialConfig.model_validate({"model": {"kind": "mlp", "args": {"width": 8}}})
    with pytest.raises(ValueError, match=r"needs data\.factory"):
        TrialConfig.model_validate({"data": {"name": "custom"}})
    with pytest.raises(ValueError, match="not 'module:function'"):
        FactoryRef.model_validate("mynets.make_conv")


def test_the_hash_follows_the_code_not_the_path(project, tmp_path_factory, monkeypatch):
    moved = tmp_path_factory.mktemp("moved")
    (moved / "mynets.py").write_text(NETS)
    raw = {"model": {"kind": "custom", "factory": "mynets:make_conv", "args": {"width": 4}}}
    monkeypatch.chdir(project)
    here = TrialConfig.model_validate(raw)
    monkeypatch.chdir(moved)
    there = TrialConfig.model_validate(raw)
    assert here.model.factory.file != there.model.factory.file
    assert here.content_hash() == there.content_hash()
    (moved / "mynets.py").write_text(NETS + "# edited\n")
    assert TrialConfig.model_validate(raw).content_hash() != here.content_hash()
    with pytest.raises(ValueError, match="changed since the trial was configured"):
        run_trial(there)  # validated before the edit: refused, never run on other code


def test_the_python_api_trains_a_custom_model_on_custom_data(project, monkeypatch):
    monkeypatch.chdir(project)
    config = TrialConfig.model_validate(
        {
            "model": {"kind": "custom", "factory": "mynets:make_conv", "args": {"width": 4}},
            "data": {"name": "custom", "factory": "mydata:make_images", "args": {"n": 16}},
            "optimizer": {"name": "gd", "lr": "auto_sharpness"},
            "loss": "mse",
            "steps": 5,
            "probes": {"loss": 1, "ntk_spectrum": 5},
            "dtype": "float64",
        }
    )
    trace = run_trial(config)
    assert trace.status == "completed"
    steps, values = trace.series("loss")
    assert len(steps) == 6 and values[-1] < values[0]
    assert trace.final("tuned_lr") > 0 and "ntk_lambda_max" in trace.metrics
    torch.manual_seed(123)  # the factory is called after seeding with the trial seed
    assert run_trial(config).series("loss")[1].tolist() == values.tolist()
