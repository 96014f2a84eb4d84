"""A command whose reader stops early (``… | head``) ends quietly, with 141, every time.

``python -m gdscope.store.diff A B | head`` ended with a BrokenPipeError traceback, and
``gdscope export DIR --csv - | head -1`` exited 1 with no message (1 says "a trial failed"
elsewhere). Each command here runs with its standard output's reader already gone: the first
write fails, as it does after ``head`` has read its lines.
"""

import subprocess
import sys

import pytest

from gdscope.store import Store
from gdscope.training import Trace

CLOSED = 141  # 128 + SIGPIPE, as a shell reports a program the closed pipe ended


def _store(folder, loss: float) -> str:
    store = Store(folder)
    trace = Trace(
        status="completed", steps=2, reason="ran", records={"loss": ([0, 1, 2], [1.0, 0.5, loss])}
    )
    for seed in range(3):
        store.record_trial("a", "quick", {"seed": seed}, f"h{seed}", trace)
    return str(folder)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return (
        _store(tmp_path_factory.mktemp("one"), 0.25),
        _store(tmp_path_factory.mktemp("two"), 0.125),
    )


def _closed_reader(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` with nobody reading its standard output."""
    with subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader is gone before the command writes anything
        err = process.stderr.read()
        code = process.wait(timeout=120)
    return subprocess.CompletedProcess(args, code, "", err)


@pytest.mark.parametrize(
    "args",
    [
        ["export", "STORE", "--csv", "-"],
        ["export", "STORE", "--verdicts", "-"],
        ["show", "STORE"],
        ["show", "STORE", "--json"],
        ["list", "probes"],
        ["--version"],
        ["--help"],
        ["run", "--help"],
        ["list"],
    ],
    ids=[
        "export-csv",
        "export-verdicts",
        "show",
        "show-json",
        "list",
        "version",
        "help",
        "command-help",
        "group-without-command",
    ],
)
def test_a_command_ends_quietly_when_its_reader_is_gone(stores, args):
    out = _closed_reader("-m", "gdscope", *(stores[0] if a == "STORE" else a for a in args))
    assert (out.returncode, out.stderr) == (CLOSED, "")


def test_the_store_diff_ends_quietly_when_its_reader_is_gone(stores):
    out = _closed_reader("-m", "gdscope.store.diff", *stores)
    assert (out.returncode, out.stderr) == (CLOSED, "")
    differs = subprocess.run(
        [sys.executable, "-m", "gdscope.store.diff", *stores], capture_output=True, text=True
    )
    assert differs.returncode == 1 and "series" in differs.stdout  # read whole: as before
