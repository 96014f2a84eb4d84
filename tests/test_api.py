"""The run pipeline: store, resume, re-judge, wrong claims FAIL, bad study files write nothing."""

import math
import sqlite3
import sys
from contextlib import closing

import pytest
import torch

from _stores import kernel_study, study_file
from gdscope import api
from gdscope.cli import main
from gdscope.runners.base import ensemble_jobs
from gdscope.store import Store
from gdscope.studies import StudyError
from gdscope.trials.trial import validate_stored_trial

STUDY = kernel_study("tiny-rate", band="BAND")  # the band filled in by each test


def _write(tmp_path, text, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_store_resume_and_verify(tmp_path):
    path = _write(tmp_path, STUDY.replace("BAND", "-1.1, -0.9"))
    results = tmp_path / "res"
    first = api.run_study(path, results=results)
    assert [v.status for v in first.verdicts] == ["PASS"]
    assert (first.trials, first.ran, first.failed) == (12, 12, 0)
    again = api.run_study(path, results=results)
    assert again.ran == 0  # every trial was already stored
    assert again.verdicts[0].statistic == first.verdicts[0].statistic
    store = Store(results)
    assert len(store.trials()) == 12
    rejudged = api.verify(results)
    assert [v.status for r in rejudged for v in r.verdicts] == ["PASS"]
    assert rejudged[0].verdicts[0].statistic == first.verdicts[0].statistic


def test_a_deliberately_wrong_claim_fails(tmp_path):
    path = _write(tmp_path, STUDY.replace("BAND", "0.9, 1.1"))  # wrong sign of the exponent
    verdict = api.run_study(path, results=tmp_path / "res").verdicts[0]
    assert verdict.status == "FAIL", verdict.reason


def test_overrides_change_the_sweep(tmp_path):
    path = _write(tmp_path, STUDY.replace("BAND", "-1.1, -0.9"))
    result = api.run_study(path, results=tmp_path / "res", overrides=["sweep.data.n=[4, 8]"])
    assert result.trials == 6
    assert result.verdicts[0].status == "INCONCLUSIVE"  # 2 points cannot make a power law


BAD = {
    "unknown key": (STUDY.replace("provenance =", "provenence ="), "did you mean 'provenance'"),
    "wrong type": (STUDY.replace("seeds = [0, 1, 2]", 'seeds = "all"'), "seeds"),
    "width <= 0": (
        STUDY.replace('kind = "kernel_dynamics"', 'kind = "network"\n"model.width" = 0')
        .replace('gram = "h_infinity"\n', "")
        .replace('method = "gd"\n', "")
        .replace("steps_per_kappa = 40\ntol = 1e-10\n", "")
        .replace('"data.d" = 4', '"data.d" = 4\n"data.n" = 8'),
        "model.width",
    ),
    "empty sweep": (STUDY.replace('"data.n" = [4, 8, 16, 32]', '"data.n" = []'), "sweep.data.n"),
    "unknown claim kind": (STUDY.replace('kind = "power_law"', 'kind = "powerlaw"'), "power_law"),
    "broken TOML": (STUDY.replace("[sweep]", "[sweep"), ":"),
    "claim key typo": (
        STUDY.replace(
            'x = { reduce = "initial"', 'x = "data.nn"\nxx = { reduce = "initial"'
        ).replace("xx = ", "# "),
        "no trial has config key 'data.nn'",
    ),
    "claim metric typo": (
        STUDY.replace('metric = "residual"', 'metric = "residul"'),
        "claims[gd-exponent].y.metric: no trial records metric 'residul'; did you mean 'residual'",
    ),
    "metric no probe of the trials records": (
        STUDY.replace('metric = "residual"', 'metric = "sharpness"'),
        "no trial records metric 'sharpness' (schedule the probe: probes.sharpness",
    ),
    "expression name neither config key nor metric": (
        STUDY.replace('metric = "kappa" }', 'metric = "kappa", then = "value / kapa" }'),
        "claims[gd-exponent].x.then: no trial records metric 'kapa'",
    ),
    "claim id with markup": (
        STUDY.replace('id = "gd-exponent"', 'id = "[/bold]x"'),
        "claims[[/bold]x].id: String should",
    ),
    "table replaced by a value": (
        STUDY.replace('"data.d" = 4', 'data = 4\n"data.d" = 4'),
        "not a table",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_study_files_are_refused_and_write_nothing(case, tmp_path, monkeypatch, capsys):
    text, fragment = BAD[case]
    path = _write(tmp_path, text.replace("BAND", "-1.1, -0.9"))
    results = tmp_path / "res"
    with pytest.raises(StudyError) as info:
        api.run_study(path, results=results)
    assert fragment in str(info.value)
    assert not results.exists()
    # the command line, in this process (a subprocess per case cost ≈ 6 s each)
    monkeypatch.setattr(sys, "argv", ["gdscope", "run", str(path), "--results", str(results)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert not results.exists()


def test_unknown_study_name_suggests_the_closest(tmp_path):
    with pytest.raises((StudyError, ValueError), match="did you mean 'nag-acceleration'"):
        api.run_study("nag-acceleraton", results=tmp_path / "res")


def test_batched_study_stores_the_same_bits_as_one_by_one(tmp_path):
    from _stores import assert_same_results

    one = api.run_study("mup-coord-check", scale="smoke", results=tmp_path / "one", batch=False)
    many = api.run_study(
        "mup-coord-check", scale="smoke", results=tmp_path / "many", batch=True, workers=2
    )
    assert one.trials == many.trials == many.ran and many.failed == 0
    assert_same_results(Store(tmp_path / "one"), Store(tmp_path / "many"))


def test_auto_batch_keeps_ensembles_for_cuda_trials_only():
    base = {"model": {"kind": "two_layer", "width": 8}, "data": {"n": 4, "d": 3}, "steps": 2}
    cpu = [(f"c{s}", {**base, "seed": s}) for s in range(4)]
    gpu = [(f"g{s}", {**base, "seed": s, "device": "cuda"}) for s in range(4)]
    groups, _ = ensemble_jobs(cpu + gpu, 1, None)
    assert groups == [[0], [1], [2], [3], [4, 5, 6, 7]]
    forced, _ = ensemble_jobs(cpu + gpu, 4, True)
    assert forced == [[0, 1], [2, 3], [4, 5], [6, 7]]  # split so every worker gets a share


def test_plan_counts_trials_and_stored_ones_and_writes_nothing(tmp_path):
    path = _write(tmp_path, STUDY.replace("BAND", "-1.1, -0.9"))
    results = tmp_path / "res"
    plan = api.plan_study(path, results=results, overrides=["sweep.data.n=[4, 8, 16]"])
    assert not results.exists()
    assert (plan.trials, plan.stored, plan.to_run) == (9, 0, 9)
    assert plan.axes == {"data.n": [4, 8, 16], "seed": [0, 1, 2]}
    assert [c.id for c in plan.study.claims] == ["gd-exponent"]
    api.run_study(path, results=results, overrides=["sweep.data.n=[4, 8]"])
    before = sorted((p.name, p.stat().st_size) for p in results.iterdir())
    plan = api.plan_study(path, results=results)  # 4 points; 2 of them already stored
    assert (plan.trials, plan.stored, plan.to_run) == (12, 6, 6)
    assert sorted((p.name, p.stat().st_size) for p in results.iterdir()) == before
    assert api.run_study(path, results=results).ran == plan.to_run


def test_plan_refuses_what_run_refuses(tmp_path):
    path = _write(tmp_path, STUDY.replace("BAND", "-1.1, -0.9"))
    with pytest.raises(StudyError, match=r"data\.n"):
        api.plan_study(path, results=tmp_path / "res", overrides=["sweep.data.n=[0]"])
    with pytest.raises(ValueError, match="scale"):
        api.plan_study(path, scale="huge", results=tmp_path / "res")
    assert not (tmp_path / "res").exists()


def test_a_shared_trial_is_judged_with_this_studys_own_config(tmp_path):
    """Verdicts do not depend on which study stored a shared trial first."""
    a = _write(
        tmp_path, STUDY.replace('"data.d" = 4\n', "").replace("BAND", "-1.1, -0.9"), "a.toml"
    )
    b = _write(
        tmp_path,
        STUDY.replace('name = "tiny-rate"', 'name = "tiny-b"')
        .replace("BAND", "-1.1, -0.9")
        .replace('kind = "power_law"', 'kind = "power_law"\nwhere = { "data.d" = 4 }'),
        "b.toml",
    )  # the same trials (data.d = 4 is the default), but b's claim reads data.d
    alone = api.run_study(b, results=tmp_path / "alone").verdicts
    api.run_study(a, results=tmp_path / "shared")
    shared = api.run_study(b, results=tmp_path / "shared")
    assert shared.ran == 0  # every trial was stored by a
    assert [(v.status, v.statistic) for v in shared.verdicts] == [
        (v.status, v.statistic) for v in alone
    ]
    assert [v.status for v in alone] == ["PASS"]
    rejudged = {r.study.name: r.verdicts for r in api.verify(tmp_path / "shared")}
    assert [v.status for v in rejudged["tiny-b"]] == ["PASS"]


def _members(results, name="tiny-rate", scale="quick"):
    return {record.hash for record in Store(results).records(name, scale)}


def test_rerun_with_other_overrides_replaces_the_studys_membership(tmp_path):
    from gdscope.store.export import long_form

    path = _write(tmp_path, STUDY.replace("BAND", "-1.1, -0.9"))
    results = tmp_path / "res"
    api.run_study(path, results=results, overrides=["sweep.data.n=[4, 8, 16]"])
    first = _members(results)
    second = api.run_study(path, results=results, overrides=["sweep.data.n=[8, 16, 32]"])
    assert second.ran == 3  # n = 8 and 16 were stored by the first run
    store = Store(results)
    assert len(store.trials()) == 12  # no trial is deleted
    members = _members(results)
    assert len(members) == 9 and len(members & first) == 6
    assert {row["hash"] for row in store.trials("tiny-rate", "quick")} == members
    assert {row[2] for row in long_form(store, "tiny-rate")[1]} == members  # export
    assert store.trial_counts() == {("tiny-rate", "quick"): {"stopped": 9}}  # met the tol


def test_a_run_killed_after_unlinking_is_repaired_by_its_rerun(tmp_path, monkeypatch):
    path = _write(tmp_path, STUDY.replace("BAND", "-1.1, -0.9"))
    results = tmp_path / "res"
    api.run_study(path, results=results, overrides=["sweep.data.n=[4, 8, 16]"])
    first = _members(results)
    api.run_study(path, results=results, overrides=["sweep.data.n=[8, 16, 32]"])

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # killed after record_study, before any relink
        patch.setattr(Store, "link_trial", killed)
        with pytest.raises(KeyboardInterrupt):
            api.run_study(path, results=results, overrides=["sweep.data.n=[4, 8, 16]"])
    assert _members(results) == set()
    rerun = api.run_study(path, results=results, overrides=["sweep.data.n=[4, 8, 16]"])
    assert rerun.ran == 0 and _members(results) == first


def test_verify_of_an_interrupted_run_is_inconclusive_and_says_why(tmp_path):
    path = _write(tmp_path, STUDY.replace("BAND", "-1.1, -0.9"))
    results = tmp_path / "res"
    full = api.run_study(path, results=results)
    assert full.missing == 0
    with closing(sqlite3.connect(Store(results).path)) as conn:  # as if killed after 8 trials
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM trials WHERE hash IN (SELECT hash FROM trials LIMIT 4)")
        conn.commit()
    [result] = api.verify(results)
    assert (result.trials, result.missing) == (12, 4)
    [verdict] = result.verdicts
    assert verdict.status == "INCONCLUSIVE" and verdict.n_points > 0
    prefix = "only 8 of 12 trials are stored (run the study again to finish it); "
    assert verdict.reason.startswith(prefix) and len(verdict.reason) > len(prefix)
    assert math.isfinite(verdict.statistic)
    [stored] = Store(results).verdicts()
    assert (stored["status"], stored["reason"]) == ("INCONCLUSIVE", verdict.reason)
    resumed = api.run_study(path, results=results)
    assert (resumed.ran, resumed.missing) == (4, 0)
    assert [v.status for v in resumed.verdicts] == ["PASS"]
    assert [v.status for r in api.verify(results) for v in r.verdicts] == ["PASS"]


def test_verify_reads_a_study_stored_with_a_size_its_data_set_ignores(tmp_path, monkeypatch):
    """``data.d`` of chebyshev (1-D inputs) is refused now; a store written when it was accepted
    (the edge-of-stability studies set 4) verifies with its trials' stored hashes."""
    base = '"data.name" = "chebyshev"\n"data.n" = 8\n"data.d" = 4\n"model.width" = 8\nsteps = 2'
    path = _write(tmp_path, study_file("old-eos", base))
    with pytest.raises(StudyError, match=r"data\.d = 4: data set 'chebyshev' takes no 'd'"):
        api.run_study(path, results=tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with monkeypatch.context() as patch:  # the gdscope that wrote the store accepted it
        patch.setattr(api, "validate_trial", validate_stored_trial)
        first = api.run_study(path, results=tmp_path / "res")
    [again] = api.verify(tmp_path / "res")
    assert (first.ran, again.trials, again.missing) == (1, 1, 0)
    assert [v.status for v in again.verdicts] == [v.status for v in first.verdicts] == ["PASS"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without GPU")
def test_cuda_trials_on_a_machine_without_gpu_are_refused_before_writing(tmp_path):
    results = tmp_path / "res"
    with pytest.raises(StudyError, match="torch sees no GPU"):
        api.run_study(
            "lazy-training", scale="smoke", results=results, overrides=['base.device="cuda"']
        )
    assert not results.exists()
