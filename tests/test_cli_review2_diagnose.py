"""``gdscope diagnose`` / ``gs.diagnose`` as a new user met them: output paths found bad only
after training, a network with nothing to train, pydantic's multi-line errors from Python,
messages naming options the command does not have, and options silently ignored."""

import importlib
import os
from pathlib import Path

import pytest

import gdscope as gs
from _helpers import run_cli, user_module

NETS = """
import torch
from torch import nn


def net(width=8, d=4):
    return nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, 1))


def frozen():
    model = net()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Pick(nn.Module):
    def forward(self, x):
        return x[:, :1] * 2.0


def parameterless():
    return Pick()


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        return x[:, :1] * 2.0


def unused():
    return Unused()


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        return self.lin(x).detach()


def detached():
    return Detached()


def data(n=12, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, 1, generator=g)
"""
BASE = ["rvnets:net", "--data", "rvnets:data", "--lr", "0.1", "--steps", "3"]
SMALL = ["--probe-size", "4", "--hessian-size", "4"]


@pytest.fixture
def project(tmp_path, monkeypatch, one_thread):
    """``rvnets.py`` in the current directory (and on the import path); one torch thread."""
    return user_module(tmp_path, monkeypatch, "rvnets", NETS)


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the diagnosis starts measuring: a refusal must come before it."""

    def trains(*args, **kwargs):
        pytest.fail("diagnose trained before refusing its options")

    module = importlib.import_module("gdscope.diagnose.run")  # gs.diagnose is the function
    monkeypatch.setattr(module, "measure", trains)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "Errno" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--html", "afile/x.html", "afile is a file, not a folder"),
        ("--html", "afile/deeper/x.html", "afile is a file, not a folder"),
        ("--results", "afile/res", "afile is a file, not a folder"),
    ],
)
def test_an_output_path_under_a_file_is_refused_before_training(
    project, no_training, monkeypatch, capsys, option, value, says
):
    """It failed after the whole run with '[Errno 17] File exists' / 'Not a directory'."""
    (project / "afile").write_text("notes")
    before = _listing(project)
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *BASE, option, value)
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {option}={value}: ") and says in line, line
    assert "give a path in a folder" in line
    assert _listing(project) == before and (project / "afile").read_text() == "notes"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_page_in_a_folder_that_takes_no_files_is_refused_before_training(
    project, no_training, monkeypatch, capsys
):
    """``--html /proc/x.html`` failed after the run, naming a temporary file."""
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *BASE, "--html", "/proc/x.html")
    line = _one_line_error(code, err)
    assert line.startswith("error: --html=/proc/x.html: cannot create files in /proc"), line
    assert ".x.html." not in line  # no temporary file's name


def test_a_good_page_path_still_writes_the_page_and_leaves_no_check_file(
    project, monkeypatch, capsys
):
    page = project / "out" / "deep" / "page.html"
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *BASE, *SMALL, "--html", str(page))
    assert code == 0, err
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in project.rglob(".gdscope-check-*")]


@pytest.mark.parametrize(
    ("factory", "says"),
    [
        ("rvnets:frozen", "has no trainable parameters"),
        ("rvnets:parameterless", "has no trainable parameters"),
        ("rvnets:unused", "output does not depend on its trainable parameters"),
        ("rvnets:detached", "output does not depend on its trainable parameters"),
    ],
)
def test_a_network_with_nothing_to_train_is_refused_naming_the_factory(
    project, monkeypatch, capsys, factory, says
):
    """torch's 'optimizer got an empty parameter list', or a ZeroDivisionError traceback (S₀ = 0)."""
    results = project / "results"
    args = ["diagnose", factory, *BASE[1:], "--results", str(results)]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line_error(code, err)
    assert f"model.factory '{factory}'" in line and says in line, line
    assert "return a model" in line
    assert not results.exists()
    with pytest.raises(ValueError, match=says) as caught:
        gs.diagnose(factory, "rvnets:data", lr=0.1, steps=3)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "flags", "field"),
    [
        ({"steps": -1}, ["--steps", "-1"], "steps:"),
        ({"optimizer": "nosuch"}, ["--optimizer", "nosuch"], "optimizer.name:"),
        ({"model": "nosuch:f"}, [], "model.factory:"),
        ({"batch_size": 0, "dtype": "float16"}, ["--batch-size", "0", "--dtype", "float16"], "; "),
    ],
)
def test_the_python_api_raises_the_commands_one_line_error(
    project, no_training, monkeypatch, capsys, kwargs, flags, field
):
    """``gs.diagnose`` raised pydantic's multi-line ValidationError with a pydantic URL."""
    call = {"model": "rvnets:net", "data": "rvnets:data", "lr": 0.1, **kwargs}
    with pytest.raises(ValueError) as caught:
        gs.diagnose(**call)
    message = str(caught.value)
    assert "\n" not in message and "pydantic" not in message, message
    assert field in message
    args = [call["model"], "--data", "rvnets:data", "--lr", "0.1", *flags]
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *args)
    assert _one_line_error(code, err) == f"error: {message}"  # the command's words


@pytest.mark.parametrize("lr", [-1, 0, float("nan"), "auto_sharpness", "auto_kernel"])
def test_a_learning_rate_diagnose_cannot_take_is_one_line_offering_none_it_refuses(
    project, no_training, lr
):
    """``lr=-1`` said 'auto_kernel' or 'auto_sharpness' were accepted: diagnose takes neither."""
    with pytest.raises(ValueError) as caught:
        gs.diagnose("rvnets:net", "rvnets:data", lr=lr)
    message = str(caught.value)
    assert message.startswith("lr: diagnose needs a finite number greater than 0, got "), message
    assert "\n" not in message and "e.g. lr=0.1" in message
    assert "'auto_sharpness' or" not in message and "pydantic" not in message


def test_the_cli_lr_message_names_only_values_the_cli_takes(
    project, no_training, monkeypatch, capsys
):
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *BASE[:3], "--lr", "-1")
    line = _one_line_error(code, err)
    assert (
        line
        == "error: --lr: diagnose needs a finite number greater than 0, got -1.0; e.g. --lr 0.1"
    )


def test_run_without_results_is_refused(project, no_training, monkeypatch, capsys):
    """``--run NAME`` without ``--results`` was silently ignored."""
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *BASE, "--run", "mine")
    line = _one_line_error(code, err)
    assert line.startswith("error: --run=mine: ") and "--results" in line, line
    with pytest.raises(ValueError, match=r"run=mine: .*without results"):
        gs.diagnose("rvnets:net", "rvnets:data", lr=0.1, run="mine")


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_run_name_is_refused(project, no_training, monkeypatch, capsys, name):
    """``--run ""`` silently became 'diagnose-<function>'."""
    results = project / "results"
    args = ["diagnose", *BASE, "--run", name, "--results", str(results)]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line_error(code, err)
    assert line.startswith("error: --run: the run name is empty"), line
    assert not results.exists()


def test_a_repeated_key_value_option_is_refused(project, monkeypatch, capsys):
    """``--probe sharpness=1 --probe sharpness=2`` kept the last; ``--arg`` the same."""
    args = ["train", "--steps", "1", "--n", "8", "--d", "3", "--width", "8"]
    args += ["--probe", "sharpness=1", "--probe", "sharpness=2"]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line_error(code, err)
    assert line == (
        "error: --probe: 'sharpness' is given twice ('sharpness=1', then 'sharpness=2'); "
        "give it once"
    )
    args = ["diagnose", *BASE, "--arg", "width=8", "--arg", "width=16"]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert _one_line_error(code, err).startswith("error: --arg: 'width' is given twice")


def test_a_results_directory_holding_no_store_is_checked_without_writing(project, monkeypatch):
    """The writability check leaves nothing behind in an existing results directory."""
    results = project / "results"
    results.mkdir()
    from gdscope.diagnose.inputs import check_results

    assert check_results(results, "--results") == results
    assert os.listdir(results) == []


def test_train_and_run_trial_refuse_a_network_with_no_trainable_parameters(project):
    """``gdscope train`` and studies said torch's 'optimizer got an empty parameter list'."""
    config = gs.TrialConfig.model_validate(
        {
            "model": {"kind": "custom", "factory": "rvnets:frozen"},
            "data": {"name": "custom", "factory": "rvnets:data"},
            "steps": 2,
        }
    )
    with pytest.raises(
        ValueError,
        match=r"^model\.factory 'rvnets:frozen': the network has no trainable parameters .*"
        r"; return a model with trainable parameters$",
    ):
        gs.run_trial(config)
