"""A seeded fuzz of the command line's flags: each bad set is a one-line error, nothing written."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from _fuzz import CATALOG, _assert_outcome, _digest, _gdscope

# ---------------------------------------------------------------------------------- bad flags
# {STORE}: a results directory holding a store; {NEW}: a path that must stay absent; {FILE}: a
# regular file; {JUNK}: a folder whose gdscope.sqlite is no database; {STUDY}: a cheap study file
CHEAP = ("nag-acceleration", "--scale", "smoke")
FLAG_CASES: list[list[str]] = [
    # run: the studies
    ["run", "no-such-study", "--results", "{NEW}"],
    ["run", "lazy-trainng", "--results", "{NEW}"],
    ["run", "", "--results", "{NEW}"],
    ["run", "[/bold]", "--results", "{NEW}"],
    ["run", "../../etc/passwd", "--results", "{NEW}"],
    ["run", "{FILE}", "--results", "{NEW}"],
    ["run", "{NEW}/missing.toml", "--results", "{NEW}"],
    ["run", "nag-acceleration", "nag-acceleraton", "--results", "{NEW}"],
    # run: options
    ["run", "nag-acceleration", "--scale", "nope", "--results", "{NEW}"],
    ["run", "nag-acceleration", "--scale", "", "--results", "{NEW}"],
    ["run", "nag-acceleration", "--scale", "[/bold]", "--results", "{STORE}"],
    ["run", "lazy-training", "--scale", "QUICK", "--results", "{NEW}"],
    ["run", *CHEAP, "--workers", "0", "--results", "{NEW}"],
    ["run", *CHEAP, "--workers", "-1", "--results", "{STORE}"],
    ["run", *CHEAP, "--workers", "abc", "--results", "{NEW}"],
    ["run", *CHEAP, "--workers", "1.5", "--results", "{NEW}"],
    ["run", *CHEAP, "--workers", "", "--results", "{NEW}"],
    ["run", *CHEAP, "--runner", "nope", "--results", "{NEW}"],
    ["run", *CHEAP, "--runner", "", "--results", "{STORE}"],
    ["run", *CHEAP, "--max-trials", "0", "--results", "{NEW}"],
    ["run", *CHEAP, "--max-trials", "-5", "--results", "{STORE}"],
    ["run", *CHEAP, "--max-trials", "abc", "--results", "{NEW}"],
    ["run", *CHEAP, "--max-trials", "1", "--results", "{NEW}"],
    ["run", *CHEAP, "--seeds", "0,1", "--results", "{NEW}"],
    ["run", *CHEAP, "--batch=3", "--results", "{NEW}"],
    ["run", *CHEAP, "--dry-run=yes", "--results", "{NEW}"],
    ["run", *CHEAP, "--results"],
    ["run", *CHEAP, "--scale"],
    ["run", *CHEAP, "--results", "{FILE}"],
    ["run", *CHEAP, "--results", "{JUNK}"],
    ["run", *CHEAP, "--results", ""],
    ["run", *CHEAP, "--results", "{FILE}/sub"],
    ["run", "{STUDY}", "--results", "{FILE}", "--dry-run"],
    ["run", "{STUDY}", "--results", "{FILE}/sub", "--dry-run"],
    ["run", *CHEAP, "--results", "{JUNK}", "--dry-run"],
    # run --set: bad keys and values
    ["run", *CHEAP, "--set", "nokey", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "=3", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "base.steps", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "base.steps_per_kappa=", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "base.steps_per_kappa=abc", "--results", "{STORE}"],
    ["run", *CHEAP, "--set", "base.steps_per_kappa=-1", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "base.nope=1", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "nope.x=1", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "sweep.data.n=[]", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "sweep.data.n=[0]", "--results", "{STORE}"],
    ["run", *CHEAP, "--set", "sweep.data.n=[4, 4]", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "sweep.data.n=[4", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "seeds=[]", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "seeds=[-1]", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "seeds=nan", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "name=bad name", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "claims=3", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "base.method=[/bold]", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "base.tol=inf", "--results", "{NEW}"],
    ["run", *CHEAP, "--set", "scales.smoke.seeds=[-1]", "--results", "{NEW}"],
    ["run", "{STUDY}", "--set", "base.steps_per_kappa=0", "--results", "{STORE}"],
    # train: each a bad value of one option, one step otherwise
    ["train", "--steps", "1", "--width", "0"],
    ["train", "--steps", "1", "--width", "-3"],
    ["train", "--steps", "1", "--width", "abc"],
    ["train", "--steps", "1", "--width", "1000000000000"],
    ["train", "--steps", "1", "--depth", "0"],
    ["train", "--steps", "-1"],
    ["train", "--steps", "1", "--lr", "nan"],
    ["train", "--steps", "1", "--lr", "abc"],
    ["train", "--steps", "1", "--model", "nope"],
    ["train", "--steps", "1", "--activation", "[/bold]"],
    ["train", "--steps", "1", "--parameterization", "ntkk"],
    ["train", "--steps", "1", "--optimizer", "nope"],
    ["train", "--steps", "1", "--loss", "nope"],
    ["train", "--steps", "1", "--data", "nope"],
    ["train", "--steps", "1", "--dtype", "float16"],
    ["train", "--steps", "1", "--device", "nope"],
    ["train", "--steps", "1", "--probe", "nope=1"],
    ["train", "--steps", "1", "--probe", "loss=0"],
    ["train", "--steps", "1", "--probe", "loss"],
    ["train", "--steps", "1", "--data-option", "x"],
    ["train", "--steps", "1", "--data-option", "nope=1"],
    ["train", "--steps", "1", "--batch-size", "0"],
    ["train", "--steps", "1", "--n", "0"],
    ["train", "--steps", "1", "--init", "nope"],
    ["train", "--steps", "1", "--seed", "-1"],
    ["train", "--steps", "1", "--nope"],
    # the readers
    ["show", "{NEW}"],
    ["show", "{FILE}"],
    ["show", "{JUNK}"],
    ["show", "{STORE}", "--json=3"],
    ["verify", "{NEW}"],
    ["verify", "{JUNK}"],
    ["report", "{NEW}"],
    ["report", "{STORE}", "-o", "{STORE}/gdscope.sqlite"],
    ["report", "{STORE}", "-o", "{STORE}/gdscope.sqlite-wal"],
    ["report", "{STORE}", "-o", "{FILE}/page.html"],
    ["report", "{STORE}", "--figures", "{FILE}/figures"],
    ["report", "{STORE}", "--figures", "{FILE}"],
    ["report", "{JUNK}", "--markdown"],
    ["export", "{STORE}"],
    ["export", "{STORE}", "--csv", "-", "--study", "nope"],
    ["export", "{STORE}", "--csv", "{STORE}/gdscope.sqlite"],
    ["export", "{STORE}", "--verdicts", "{STORE}/gdscope.sqlite"],
    ["export", "{NEW}", "--csv", "-"],
    ["export", "{STORE}", "--csv"],
    # list, diagnose, and the others
    ["list", "nope"],
    ["list", "claims", "--markdown=2"],
    ["list", "probes", "extra"],
    ["diagnose", "nope_module:make", "--data", "nope_data:make", "--lr", "0.1"],
    ["diagnose", "nope_module:make", "--data", "nope_data:make"],
    ["diagnose", "not-a-ref", "--data", "x:y", "--lr", "0.1"],
    ["diagnose", "x:y", "--data", "x:y", "--lr", "0.1", "--probe-size", "0"],
    ["diagnose", "x:y", "--data", "x:y", "--lr", "0.1", "--every", "0"],
    ["diagnose", "x:y", "--data", "x:y", "--lr", "abc"],
    ["diagnose", "x:y", "--data", "x:y", "--lr", "0.1", "--html", "{STORE}/gdscope.sqlite"],
    ["verify-probes", "--dtype", "float16"],
    ["verify-probes", "--seed", "-1"],
    ["bench", "--only", "ntkk"],
    ["nope"],
    ["--nope"],
]


def _flag_ids() -> list[str]:
    ids = []
    for index, args in enumerate(FLAG_CASES):
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", " ".join(args).replace("{", "").replace("}", ""))
        ids.append(f"{index:03d}-{slug[:60]}")
    return ids


@pytest.fixture
def places(smoke_store, tmp_path) -> dict[str, Path]:
    file = tmp_path / "plain.txt"
    file.write_text("not a folder\n")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "gdscope.sqlite").write_text("hi\n")
    study = tmp_path / "cheap.toml"
    study.write_text((CATALOG[0].parent / "nag-acceleration.toml").read_text(encoding="utf-8"))
    return {
        "STORE": smoke_store,
        "NEW": tmp_path / "new",
        "FILE": file,
        "JUNK": junk,
        "STUDY": study,
    }


@pytest.mark.parametrize("args", FLAG_CASES, ids=_flag_ids())
def test_a_bad_flag_set_is_a_one_line_error_that_writes_nothing(args, places, monkeypatch, capsys):
    argv = [re.sub(r"\{(\w+)\}", lambda m: str(places[m.group(1)]), a) for a in args]
    watched = {name: places[name] for name in ("STORE", "JUNK", "FILE")}
    before = {name: _contents(path) for name, path in watched.items()}
    monkeypatch.chdir(places["FILE"].parent)  # diagnose looks for factories here: none
    code, out, err, seconds = _gdscope(monkeypatch, capsys, *argv)
    _assert_outcome(code, out, err, seconds, " ".join(argv))
    assert code == 2, f"{argv}: accepted (exit {code}):\n{out}\n{err}"
    assert not places["NEW"].exists(), argv
    assert {name: _contents(path) for name, path in watched.items()} == before, argv


def _contents(path: Path) -> Any:
    return _digest(path) if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()


def test_there_are_enough_bad_flag_sets():
    assert len(FLAG_CASES) >= 50
    commands = {args[0] for args in FLAG_CASES}
    assert {"run", "train", "show", "report", "export", "list", "diagnose"} <= commands
