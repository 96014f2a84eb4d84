"""The command line as a new user met it (review 23): what it wrote, said and judged wrongly.

``export --csv/--verdicts DIR/.lock`` replaced a results directory's lock file, so a second
``gdscope run`` started beside the first; ``--csv - --verdicts -`` wrote two CSV tables into one
stream; ``train --lr 1e39`` (float32) crashed with an overflow traceback (a failed trial in a
study); ``diagnose --help`` listed four of the six losses; a classification loss on real
targets did not name ``--loss``; the PL check "held" on a loss rate the same page rejected; and
three messages named no option (``workers``), the wrong thing (an empty name "a folder") or a
raw errno (a folder on the way that is a file).
"""

import dataclasses
import math
import os
import typing
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from _helpers import diagnose_tiny, lazy_gd_run, run_cli, user_module
from gdscope import _output
from gdscope.config import TrialConfig
from gdscope.config.base import STORED
from gdscope.diagnose import inputs
from gdscope.diagnose.verdicts import judge
from gdscope.store import Store
from gdscope.store import lock as store_lock
from gdscope.training import Trace


def _store(folder: Path) -> Path:
    """A results directory with three stored trials, its lock file made as a run makes it."""
    store = Store(folder)
    trace = Trace(
        status="completed", steps=2, reason="ran", records={"loss": ([0, 1, 2], [1.0, 0.5, 0.25])}
    )
    for seed in range(3):
        store.record_trial("a", "quick", {"seed": seed}, f"h{seed}", trace)
    store_lock.release(store_lock.acquire(folder))
    return folder


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its inode and size: what a refused command must keep."""
    return {
        str(path.relative_to(folder)): (path.lstat().st_ino, path.lstat().st_size)
        for path in sorted(folder.rglob("*"))
    }


def _one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return _store(tmp_path / "r1")


# A1 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["export", "r1", "--csv", "r1/.lock"], "--csv"),
        (["export", "r1", "--verdicts", "r1/.lock"], "--verdicts"),
        (["export", "r1", "--parquet", "r1/.lock"], "--parquet"),
        (["export", "r1", "--csv", "link.csv"], "--csv"),  # a link to the lock
        (["export", "r1", "--csv", "fine.csv", "--verdicts", "r1/.lock"], "--verdicts"),
        (["report", "r1", "-o", "r1/.lock"], "--output"),
        (["report", "r1", "-o", "link.csv"], "--output"),
        (["report", "r1", "--figures", "r1/.lock"], "--figures"),
        (["report", "r1", "-o", "-", "--figures", "r1/.lock"], "--figures"),
    ],
)
def test_an_output_onto_the_lock_file_is_refused_and_nothing_is_written(
    results, monkeypatch, capsys, args, option
):
    (results.parent / "link.csv").symlink_to("r1/.lock")
    before = _listing(results.parent)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {option}=") and "lock file" in line, line
    assert "write to another file" in line or "give another folder" in line, line
    assert _listing(results.parent) == before  # the same inodes: nothing replaced or added
    assert out == ""


def test_a_refused_export_onto_the_lock_leaves_a_running_store_locked(results, monkeypatch, capsys):
    """The review's sequence: a run holds the lock, an export targets it, a second run starts."""
    held = store_lock.acquire(results)  # the first run
    try:
        code, _, err = run_cli(monkeypatch, capsys, "export", "r1", "--verdicts", "r1/.lock")
        assert code == 2, err
        with pytest.raises(store_lock.StoreBusy):  # the second run is still refused
            store_lock.release(store_lock.acquire(results))
    finally:
        store_lock.release(held)


def test_every_writer_refuses_the_lock_file(results):
    """The check every output goes through, and the diagnose page that calls it."""
    lock = results / store_lock.LOCK_NAME
    assert store_lock.LOCK_NAME == _output.LOCK_FILE
    for check in (
        lambda: _output.check_target(lock, "--x"),
        lambda: inputs.check_html(lock, "--html"),
        lambda: _output.replacing(lock, "--x").__enter__(),
    ):
        with pytest.raises(ValueError, match="lock file"):
            check()
    assert lock.stat().st_size == len(f"{os.getpid()}\n")


# C2 -------------------------------------------------------------------------------------------


def test_two_tables_to_one_standard_output_are_refused(results, monkeypatch, capsys):
    before = _listing(results.parent)
    code, out, err = run_cli(monkeypatch, capsys, "export", "r1", "--csv", "-", "--verdicts", "-")
    line = _one_line_error(code, err)
    assert "--csv -" in line and "--verdicts -" in line and "only one of them" in line, line
    assert out == "" and _listing(results.parent) == before


def test_one_table_to_standard_output_still_works(results, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "export", "r1", "--verdicts", "-")
    assert code == 0, err
    assert out.startswith("study,")
    code, out, err = run_cli(
        monkeypatch, capsys, "export", "r1", "--csv", "-", "--verdicts", "v.csv"
    )
    assert code == 0, err
    assert out.count("\n") == 1 + 9 and (results.parent / "v.csv").is_file()


# B1 -------------------------------------------------------------------------------------------

FLOAT32_MAX = float(torch.finfo(torch.float32).max)


@pytest.mark.parametrize(
    ("optimizer", "field"),
    [
        ({"lr": 1e39}, "lr"),
        ({"name": "adam", "lr": 1e39}, "lr"),
        ({"weight_decay": 1e39}, "weight_decay"),
        ({"name": "subgradient", "l1": 1e39}, "l1"),
    ],
)
def test_an_optimizer_number_float32_cannot_hold_is_refused(optimizer, field):
    with pytest.raises(ValidationError) as caught:
        TrialConfig.model_validate({"optimizer": optimizer})
    text = str(caught.value)
    assert f"optimizer.{field} = 1e+39" in text and "float32" in text, text
    assert f"{FLOAT32_MAX:.4g}" in text and "--dtype float64" in text, text
    TrialConfig.model_validate({"optimizer": optimizer, "dtype": "float64"})  # float64 holds it
    TrialConfig.model_validate(  # a stored config keeps its hash and verifies
        {"optimizer": optimizer}, context={STORED: True}
    )


def test_an_infinite_weight_decay_is_refused():
    with pytest.raises(ValidationError, match=r"optimizer.weight_decay must be a finite number"):
        TrialConfig.model_validate({"optimizer": {"weight_decay": math.inf}, "dtype": "float64"})
    TrialConfig.model_validate(
        {"optimizer": {"lr": FLOAT32_MAX}}
    )  # the largest float32 is still a float32


@pytest.mark.parametrize("lr", ["1e39", "inf", "nan"])
def test_train_refuses_a_learning_rate_its_dtype_cannot_hold(monkeypatch, capsys, lr):
    code, out, err = run_cli(monkeypatch, capsys, "train", "--lr", lr, "--steps", "2")
    line = _one_line_error(code, err)
    assert line.startswith("error: optimizer.lr"), line
    assert "<root>" not in line and out == ""
    if lr == "1e39":
        assert "float32" in line and "3.403e+38" in line and "--dtype float64" in line, line


def test_a_study_refuses_the_learning_rate_before_it_runs(tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "r6"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        "lazy-training",
        "--results",
        str(out_dir),
        "--set",
        "base.optimizer.lr=1e39",
        "--dry-run",
    )
    line = _one_line_error(code, err)
    assert "optimizer.lr = 1e+39 is larger than float32 can hold" in line, line
    assert not out_dir.exists()


# C3 -------------------------------------------------------------------------------------------


def test_the_loss_help_lists_every_loss_the_config_accepts():
    import typer

    from gdscope.cli import app
    from gdscope.cli.train import LOSSES

    accepted = typing.get_args(TrialConfig.model_fields["loss"].annotation)
    assert accepted == LOSSES
    group = typer.main.get_command(app)
    for command in ("diagnose", "train"):
        (param,) = [p for p in group.commands[command].params if p.name == "loss"]  # type: ignore[attr-defined]
        assert param.help == " | ".join(accepted), (command, param.help)


# C4 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge"])
def test_a_classification_loss_on_real_targets_names_loss_and_the_fix(
    tmp_path, monkeypatch, capsys, loss
):
    user_module(tmp_path, monkeypatch, "r23nets")
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "diagnose",
        "r23nets:net",
        "--data",
        "r23nets:data",
        "--lr",
        "0.1",
        "--steps",
        "2",
        "--loss",
        loss,
    )
    line = _one_line_error(code, err)
    assert line.startswith(f"error: --loss {loss}: "), line
    assert "real-valued" in line and "12 distinct values" in line, line
    assert "use --loss mse" in line, line
    assert out == ""


def test_check_targets_takes_labels_and_binary_targets():
    for loss, y in [
        ("cross_entropy", torch.tensor([0, 2, 1])),
        ("hinge", torch.tensor([-1.0, 1.0, 1.0])),
        ("cross_entropy", torch.tensor([[0.0], [1.0]])),
        ("mse", torch.tensor([0.3, -0.7])),
    ]:
        inputs.check_targets(loss, y)
    with pytest.raises(ValueError, match=r"^loss=cross_entropy: .* use loss=mse"):
        inputs.check_targets("cross_entropy", torch.tensor([0.0, 0.5, 1.0]))


# C7 -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return diagnose_tiny(tmp_path_factory, "review23nets", lr=0.1).measurements


def test_a_rejected_loss_rate_does_not_support_the_pl_check(measured):
    """The review's run: ρ = 0.9737 with R² 0.7708 < 0.95 "supported" PL holds."""
    run = lazy_gd_run(measured, loss_rate=0.9737, loss_rate_r2=0.7708, loss_rate_ok=False)
    diagnosis = judge(run)
    check = diagnosis.check("pl")
    assert check.status == "n/a", check
    assert "R² = 0.7708 < 0.95: fit rejected" in check.threshold, check.threshold
    assert "cannot be judged from this run" in check.threshold, check.threshold
    (stored,) = [c for c in diagnosis.to_dict()["checks"] if c["key"] == "pl"]
    assert stored["status"] == "n/a"  # the JSON says what the table says
    accepted = judge(dataclasses.replace(run, loss_rate_r2=0.99, loss_rate_ok=True))
    assert accepted.check("pl").status == "holds"  # an accepted fit is judged as before


# C8 -------------------------------------------------------------------------------------------


def test_workers_zero_names_the_option(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        "eos-convex",
        "--scale",
        "smoke",
        "--results",
        str(tmp_path / "x"),
        "--workers",
        "0",
    )
    assert _one_line_error(code, err) == "error: --workers: expected a positive integer, got 0"
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option", ["--csv", "--verdicts", "--parquet"])
def test_an_empty_output_name_is_called_empty(results, monkeypatch, capsys, option):
    before = _listing(results.parent)
    code, _, err = run_cli(monkeypatch, capsys, "export", "r1", option, "")
    line = _one_line_error(code, err)
    assert line == f"error: {option}='' is empty; give a file name", line
    assert _listing(results.parent) == before


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["export", "r1", "--csv", "afile.txt/x.csv"], "--csv"),
        (["export", "r1", "--verdicts", "afile.txt/deep/v.csv"], "--verdicts"),
        (["export", "r1", "--parquet", "afile.txt/x.parquet"], "--parquet"),
        (["report", "r1", "-o", "afile.txt/x.html"], "--output"),
    ],
)
def test_an_output_below_a_file_names_the_option_and_the_file(
    results, monkeypatch, capsys, args, option
):
    (results.parent / "afile.txt").write_text("notes")
    before = _listing(results.parent)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {option}={args[-1]}: afile.txt is a file, not a folder"), line
    assert "Errno" not in line and "give a path in a folder" in line
    assert _listing(results.parent) == before
