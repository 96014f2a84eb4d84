"""The run pipeline: store, resume, re-judge, wrong claims FAIL, bad study files write nothing."""

import subprocess
import sys

import pytest

from gdscope import api
from gdscope.store import Store
from gdscope.studies import StudyError

STUDY = """
name = "tiny-rate"
claim_ids = ["D1"]
title = "tiny kernel-level GD rate study"
seed_paper = "003"
reference = "test"
provenance = "designed"
seeds = [0, 1, 2]

[base]
kind = "kernel_dynamics"
gram = "h_infinity"
method = "gd"
steps_per_kappa = 40
tol = 1e-10
"data.d" = 4

[sweep]
"data.n" = [4, 8, 16, 32]

[[claims]]
id = "gd-exponent"
kind = "power_law"
x = { reduce = "initial", metric = "kappa" }
y = { reduce = "one_minus_rate", metric = "residual" }
band = [BAND]
"""


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
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_study_files_are_refused_and_write_nothing(case, tmp_path):
    text, fragment = BAD[case]
    path = _write(tmp_path, text.replace("BAND", "-1.1, -0.9"))
    results = tmp_path / "res"
    with pytest.raises(StudyError) as info:
        api.run_study(path, results=results)
    assert fragment in str(info.value)
    assert not results.exists()
    out = subprocess.run(
        [sys.executable, "-m", "gdscope", "run", str(path), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error:")
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
    groups, _ = api._ensembles(cpu + gpu, 1, None)
    assert groups == [[0], [1], [2], [3], [4, 5, 6, 7]]
    forced, _ = api._ensembles(cpu + gpu, 4, True)
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
