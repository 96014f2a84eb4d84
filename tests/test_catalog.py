"""Every catalogue study runs end to end at smoke scale; the headline claims PASS at quick scale."""

import pytest

from gdscope import api

STATUSES = {"PASS", "FAIL", "INCONCLUSIVE", "REPORTED"}


@pytest.mark.parametrize("name", list(api.catalog()))
def test_every_catalogue_study_reaches_a_verdict_at_smoke_scale(name, tmp_path):
    result = api.run_study(name, scale="smoke", results=tmp_path)
    assert result.verdicts, f"{name} has no claims"
    assert {v.status for v in result.verdicts} <= STATUSES
    assert all(v.reason for v in result.verdicts)
    assert result.failed == 0
    rejudged = api.verify(tmp_path)  # the stored spec and trials rebuild the same verdicts
    assert [v.status for v in rejudged[0].verdicts] == [v.status for v in result.verdicts]


@pytest.mark.parametrize(
    "name",
    [  # l1-paradox (≈ 30 s) runs with -m slow; nonsmooth studies are covered by the others
        "nag-acceleration",
        pytest.param("l1-paradox", marks=pytest.mark.slow),
        "eos-convex",
        "eos-convex-huber",
    ],
)
def test_headline_claims_pass_at_quick_scale(name, tmp_path):
    result = api.run_study(name, scale="quick", results=tmp_path)
    assert [v.status for v in result.verdicts] == ["PASS"] * len(result.verdicts), [
        (v.claim_id, v.status, v.reason) for v in result.verdicts
    ]


def test_every_study_file_states_its_provenance_and_reference():
    for name in api.catalog():
        study = api.load(name)
        assert study.provenance in {"paper", "designed"}
        assert study.reference and study.claim_ids and study.title and study.seed_paper
        assert {"quick", "paper", "smoke"} <= set(study.scales), name


@pytest.mark.parametrize("scale", ["quick", "paper", "smoke"])
def test_every_catalogue_study_expands_to_valid_trials_at_every_scale(scale):
    from gdscope.trials.trial import validate_trial

    for name in api.catalog():  # a study validates its trials when it runs a scale, not on load
        assert api.load(name).validated(scale, validate_trial).validated, name
