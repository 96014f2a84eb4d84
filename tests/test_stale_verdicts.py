"""A study's stored verdicts go when its trials change: a stopped rerun shows NOT JUDGED, not the
status that judged other trials (a paper-scale run stopped after a model change did so)."""

from gdscope.report import render_report
from gdscope.store import Store
from gdscope.studies.verdict import Verdict
from gdscope.training import Trace

SPEC = {"name": "s", "claims": [{"id": "c1"}]}


def _judged(tmp_path, hashes=("h0", "h1")):
    store = Store(tmp_path / "r")
    store.record_study("s", "paper", SPEC, list(hashes))
    store.record_study("t", "paper", {"name": "t"}, ["h0"])  # another study, left alone
    for digest in hashes:
        trace = Trace(status="completed", steps=0, reason="", wall_time_s=0.1)
        trace.record(0, {"loss": 1.0})
        store.record_trial("s", "paper", {"seed": int(digest[1:])}, digest, trace)
    store.link_trial("t", "paper", "h0")
    verdict = Verdict(
        claim_id="c1", status="FAIL", statistic=0.5, reason="r", ci=None, band=(0.0, 0.1),
        n_points=2,
    )  # fmt: skip
    for study in ("s", "t"):
        store.record_verdicts(study, "paper", [verdict])
    store.record_verdicts("s", "quick", [verdict])  # another scale, left alone
    return store


def _statuses(store):
    return sorted((v["study"], v["scale"], v["status"]) for v in store.verdicts())


def test_the_same_trials_keep_their_verdicts(tmp_path):
    store = _judged(tmp_path)
    store.record_study("s", "paper", SPEC, ["h1", "h0"])  # a resumed run: same membership
    assert ("s", "paper", "FAIL") in _statuses(store)


def test_other_trials_drop_the_verdicts_of_that_study_and_scale_only(tmp_path):
    store = _judged(tmp_path)
    store.record_study("s", "paper", SPEC, ["h0", "h2"])  # the model changed one trial's hash
    assert _statuses(store) == [("s", "quick", "FAIL"), ("t", "paper", "FAIL")]
    page = render_report(store.directory, fmt="markdown")
    row = next(line for line in page.splitlines() if line.startswith("| s | paper"))
    assert "NOT JUDGED" in row and "FAIL" not in row


def test_a_changed_spec_drops_them_too(tmp_path):
    store = _judged(tmp_path)
    store.record_study("s", "paper", {**SPEC, "title": "new"}, ["h0", "h1"])
    assert _statuses(store) == [("s", "quick", "FAIL"), ("t", "paper", "FAIL")]
