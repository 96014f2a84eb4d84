"""A results directory this user cannot write is still read: show, export, verify, report, dry run.

Before the fix each of these failed with a traceback ("attempt to write a readonly database"),
because the store always opened for writing. The commands run as an unprivileged user (as root,
through ``setpriv``: root ignores file modes) on a folder and store without write permission.
"""

import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from _stores import study_file
from gdscope.store import Store
from gdscope.training import Trace

STUDY = study_file(
    "tiny", 'kind = "objective"\nsteps = 3', claim='y = { reduce = "final", metric = "f" }'
)


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("running as root needs setpriv (util-linux) to drop privileges")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def locked():
    """A results directory with one judged study, then made read-only (folder and files)."""
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="gdscope-ro-"))
    root.chmod(0o777)
    results = root / "results"
    (root / "study.toml").write_text(STUDY)
    done = subprocess.run(
        [sys.executable, "-m", "gdscope", "run", str(root / "study.toml"), "--results",
         str(results), "--no-report"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for path in results.iterdir():
        path.chmod(0o444)
    results.chmod(0o555)
    (root / "out").mkdir(mode=0o777)
    (root / "out").chmod(0o777)
    (root / "home").mkdir(mode=0o777)
    (root / "home").chmod(0o777)
    yield root
    results.chmod(0o755)
    shutil.rmtree(root)


def _as_reader(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(root / "home"), "MPLCONFIGDIR": str(root / "home")}
    return subprocess.run(
        [*_unprivileged(), sys.executable, "-m", "gdscope", *args],
        capture_output=True, text=True, check=False, timeout=300, env=env, cwd=root,
    )  # fmt: skip


@pytest.mark.slow  # ~20-40 s; the default run stays under 10 minutes
def test_read_only_commands_read_a_store_they_cannot_write(locked):
    results = str(locked / "results")
    before = (locked / "results" / "gdscope.sqlite").read_bytes()
    for args, expected in [
        (("show", results), "c"),
        (("export", results, "--csv", "-"), "study,scale,hash,status"),
        (("verify", results), "1 PASS"),
        (("report", results, "-o", str(locked / "out" / "r.html")), "report:"),
        (("run", str(locked / "study.toml"), "--results", results, "--dry-run"), "1 stored"),
    ]:
        done = _as_reader(locked, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert expected in done.stdout, (args, done.stdout)
        assert "Traceback" not in done.stderr
    assert (locked / "out" / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert (locked / "results" / "gdscope.sqlite").read_bytes() == before


@pytest.mark.slow  # ~20-40 s; the default run stays under 10 minutes
def test_writing_into_a_folder_it_cannot_write_is_one_line(locked):
    done = _as_reader(locked, "report", str(locked / "results"))  # default: DIR/report.html
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "permission denied" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_read_only_store_refuses_writes(tmp_path):
    store = Store(tmp_path)
    trace = Trace(status="completed", steps=0, reason="", wall_time_s=0.0)
    trace.record(0, {"loss": math.nan})
    store.record_trial("s", "quick", {"seed": 0}, "h0", trace)
    reader = Store(tmp_path, read_only=True)
    assert [t["hash"] for t in reader.trials()] == ["h0"]
    with pytest.raises(Exception, match="read-only"):
        reader.record_trial("s", "quick", {"seed": 1}, "h1", trace)
    with pytest.raises(Exception, match="read-only"), reader.writer():
        pass
