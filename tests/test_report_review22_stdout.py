"""``gdscope report DIR -o -`` writes to standard output, as ``gdscope export --csv -`` does.

It wrote a file literally named ``-`` (and printed ``report: -``). Now the Markdown, or the
HTML page, is all that goes to standard output; nothing named ``-`` is written.
"""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from _helpers import monitor_tiny, run_cli
from gdscope.cli import app


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A run monitored for three steps (one figure: its loss)."""
    folder = tmp_path_factory.mktemp("store")
    monitor_tiny(folder, "r")
    return folder


@pytest.mark.parametrize(
    ("flags", "start"), [(["--markdown"], "# Verdicts\n"), ([], "<!DOCTYPE html>\n")]
)
def test_dash_writes_the_report_to_stdout_and_no_file(store, tmp_path, monkeypatch, flags, start):
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["report", str(store), *flags, "-o", "-"])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(start)  # the document alone: no "report: -" line
    assert "report: -" not in out.stdout
    assert not (tmp_path / "-").exists() and list(tmp_path.iterdir()) == []
    assert not (store / "-").exists()


def test_dash_with_figures_writes_them_and_says_so_on_stderr(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figures = tmp_path / "figs"
    out = CliRunner().invoke(app, ["report", str(store), "-o", "-", "--figures", str(figures)])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("<!DOCTYPE html>") and "figures:" not in out.stdout
    assert f"figures: {figures}" in out.stderr and any(figures.glob("*.svg"))
    assert not (tmp_path / "-").exists()


def test_dash_on_a_folder_without_a_store_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "report", "none", "--markdown", "-o", "-")
    assert (code, out) == (2, "")
    assert err.startswith("error: no gdscope results in none") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_dash_ends_quietly_when_its_reader_is_gone(store, tmp_path):
    args = [sys.executable, "-m", "gdscope", "report", str(store), "--markdown", "-o", "-"]
    pipe = subprocess.PIPE
    with subprocess.Popen(args, stdout=pipe, stderr=pipe, text=True, cwd=tmp_path) as run:
        assert run.stdout is not None and run.stderr is not None
        run.stdout.close()  # the reader is gone before the command writes anything
        err = run.stderr.read()
        code = run.wait(timeout=120)
    assert (code, err) == (141, "")
    assert list(tmp_path.iterdir()) == [] and not (store / "-").exists()
