"""Nothing gdscope writes may overwrite the store; outputs are whole files; planted links are not followed.

Before the fix, ``export R --csv R/gdscope.sqlite`` truncated the store to 82 bytes and printed a
traceback, ``report R -o R/gdscope.sqlite`` replaced it with HTML and exited 0, and the report's
fixed ``.<name>.partial`` file followed a link planted there.
"""

import hashlib
import math
import os
import subprocess
import sys

import pytest

from gdscope._output import OutputError, replacing
from gdscope.report import write_report
from gdscope.store import Store
from gdscope.training import Trace

CLI = (sys.executable, "-m", "gdscope.cli")


def _trace() -> Trace:
    trace = Trace(status="completed", steps=1, reason="", wall_time_s=0.1)
    trace.record(0, {"loss": 1.0})
    trace.record(1, {"loss": math.nan})
    return trace


@pytest.fixture
def results(tmp_path):
    store = Store(tmp_path / "results")
    store.record_study("s", "quick", {"name": "s", "claims": []})
    store.record_trial("s", "quick", {"kind": "network", "seed": 0}, "h0", _trace())
    return store.directory


def _digest(results) -> str:
    return hashlib.sha256((results / "gdscope.sqlite").read_bytes()).hexdigest()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        ("export", "{r}", "--csv", "{r}/gdscope.sqlite"),
        ("export", "{r}", "--parquet", "{r}/gdscope.sqlite-wal"),
        ("report", "{r}", "-o", "{r}/gdscope.sqlite"),
        ("report", "{r}", "--markdown", "-o", "{r}/gdscope.sqlite-shm"),
        ("export", "{r}", "--csv", "{link}"),  # a link to the store
        ("report", "{r}", "-o", "{link}"),
    ],
)
def test_the_store_is_never_an_output(results, tmp_path, args):
    link = tmp_path / "innocent.csv"
    link.symlink_to(results / "gdscope.sqlite")
    before = _digest(results)
    done = _cli(*(a.format(r=results, link=link) for a in args))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "is a gdscope results store" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert _digest(results) == before
    assert len(Store(results, create=False).trials()) == 1


def test_a_link_at_the_target_is_replaced_never_followed(results, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "out.csv").symlink_to(victim)
    (tmp_path / ".report.html.partial").symlink_to(victim)  # the old fixed temporary name
    assert _cli("export", str(results), "--csv", str(tmp_path / "out.csv")).returncode == 0
    write_report(results, tmp_path / "report.html")
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "out.csv").is_symlink()
    assert (tmp_path / "out.csv").read_text().startswith("study,scale,hash,status")
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target, "--out") as file:
        file.write("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_written_file_has_ordinary_permissions(tmp_path):
    with replacing(tmp_path / "a.txt", "--out") as file:
        file.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_folder_is_not_a_file_target(tmp_path):
    with pytest.raises(OutputError, match="is a folder"), replacing(tmp_path, "--csv"):
        pass


@pytest.mark.parametrize("command", [("export", "--csv"), ("report", "-o")])
def test_a_copy_of_a_store_under_another_name_is_never_an_output(results, tmp_path, command):
    backup = tmp_path / "backup.sqlite"
    backup.write_bytes((results / "gdscope.sqlite").read_bytes())
    before = hashlib.sha256(backup.read_bytes()).hexdigest()
    done = _cli(command[0], str(results), command[1], str(backup))
    assert done.returncode == 2, done.stderr
    assert "is an SQLite database (a copy of a results store?)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert hashlib.sha256(backup.read_bytes()).hexdigest() == before
