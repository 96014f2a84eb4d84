"""``verify`` re-judges a custom study from its stored trials, not from the user's files now.

A review found that editing the factory file of a custom study (a comment is enough) made
``gdscope verify`` store "only 0 of 2 trials are stored" over the real verdict while ``show``
still counted the trials, because verify hashed the trials again with the file's new digest;
and that with the file moved away verify stopped (exit 2) before judging any study, the
catalogue studies of the same store included. Verify now judges a study on the trials the store
links to it, with their stored configs, wherever its expansion no longer names them.
"""

import sqlite3
import sys
from contextlib import closing

import pytest

from _helpers import run_cli, user_module
from gdscope import api
from gdscope.store import Store

STUDY = """
name = "custom-verify"
seeds = [0]
[base]
steps = 3
loss = "mse"
"optimizer.name" = "gd"
"optimizer.lr" = 0.1
"probes.loss" = 1
[base.model]
kind = "custom"
factory = "{module}:net"
[base.data]
name = "custom"
factory = "{module}:data"
[sweep]
"model.args.width" = [4, 8]
[[claims]]
id = "c"
kind = "within"
y = {{ reduce = "final", metric = "loss" }}
band = [0, 100]
"""


def _verdicts(results) -> list[tuple[str, str, str, str]]:
    return [
        (row["study"], row["claim_id"], row["status"], row["reason"])
        for row in Store(results, read_only=True).verdicts()
    ]


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A store holding a tiny custom study (2 trials of 3 steps) and nag-acceleration (smoke)."""
    module = f"vnets_{tmp_path.name}".replace("-", "_")
    user_module(tmp_path, monkeypatch, module)
    study = tmp_path / "custom.toml"
    study.write_text(STUDY.format(module=module))
    results = tmp_path / "res"
    custom = api.run_study(study, results=results)
    catalogue = api.run_study("nag-acceleration", scale="smoke", results=results)
    assert (custom.trials, custom.ran, custom.missing) == (2, 2, 0)
    assert [v.status for v in custom.verdicts] == ["PASS"]
    yield tmp_path / f"{module}.py", results, {"custom-verify": custom, "nag": catalogue}
    sys.modules.pop(module, None)


def _by_name(results) -> dict[str, api.StudyResult]:
    return {r.study.name: r for r in api.verify(results)}


def _same(result: api.StudyResult, first: api.StudyResult) -> None:
    assert (result.trials, result.missing) == (first.trials, 0)
    assert [(v.claim_id, v.status, v.reason) for v in result.verdicts] == [
        (v.claim_id, v.status, v.reason) for v in first.verdicts
    ]
    assert [v.statistic for v in result.verdicts] == pytest.approx(
        [v.statistic for v in first.verdicts], nan_ok=True
    )


def test_verify_after_the_factory_file_was_edited_judges_the_stored_trials(
    stored, monkeypatch, capsys
):
    factory, results, first = stored
    before = _verdicts(results)
    factory.write_text(factory.read_text() + "\n# an edit: a comment only\n")
    again = _by_name(results)
    _same(again["custom-verify"], first["custom-verify"])
    _same(again["nag-acceleration"], first["nag"])
    assert _verdicts(results) == before  # nothing stored contradicts the 2 stored trials
    counts = Store(results, read_only=True).trial_counts()[("custom-verify", "quick")]
    assert sum(counts.values()) == again["custom-verify"].trials == 2
    code, out, err = run_cli(monkeypatch, capsys, "verify", str(results))
    assert code == 0, err
    assert "only 0 of" not in out and _verdicts(results) == before


def test_verify_with_the_factory_file_gone_still_judges_every_study(stored, monkeypatch, capsys):
    factory, results, first = stored
    before = _verdicts(results)
    factory.unlink()
    again = _by_name(results)
    assert set(again) == {"custom-verify", "nag-acceleration"}
    _same(again["custom-verify"], first["custom-verify"])
    _same(again["nag-acceleration"], first["nag"])
    assert _verdicts(results) == before
    code, out, err = run_cli(monkeypatch, capsys, "verify", str(results))
    assert code == 0, err  # was exit 2: "cannot read .../vnets_....py"
    assert "custom-verify" in out and "nag-acceleration" in out


def test_verify_of_an_interrupted_custom_run_with_the_file_gone_counts_the_missing(stored):
    """A custom study with one of its 2 trials stored: INCONCLUSIVE, 1 missing, without the file."""
    factory, results, _ = stored
    store = Store(results)
    [one, _other] = sorted(r.hash for r in store.records("custom-verify", "quick"))
    with closing(sqlite3.connect(store.path)) as conn:  # as if killed after one trial
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM trials WHERE hash = ?", (one,))
        conn.commit()
    factory.unlink()
    result = _by_name(results)["custom-verify"]
    assert (result.trials, result.missing) == (2, 1)
    [verdict] = result.verdicts
    assert verdict.status == "INCONCLUSIVE"
    assert verdict.reason.startswith("only 1 of 2 trials are stored")
