"""Study files: parsing, overrides, scales, expansion, and the error messages of bad studies."""

from __future__ import annotations

import textwrap

import pytest

from gdscope.config import TrialConfig
from gdscope.studies import CLAIM_KINDS, Study, StudyError, load_study

EXAMPLE = textwrap.dedent(
    """
    name = "toy-width"
    claim_ids = ["B3"]
    title = "relative weight change shrinks with width"
    seed_paper = "001"
    reference = "Terjék & González-Sánchez, arXiv:2205.13507"
    provenance = "designed"
    description = "A toy study for the tests."
    seeds = [0, 1]

    [base]
    steps = 20
    "optimizer.lr" = 0.05
    [base.model]
    depth = 2

    [sweep]
    "model.width" = [16, 32, 64]
    "data.n" = [8, 16]

    [[sweep_zip]]
    "optimizer.name" = ["gd", "sgd"]
    "batch_size" = [8, 4]

    [scales.quick]
    "base.steps" = 10
    [scales.paper]
    seeds = [0, 1, 2, 3]
    "sweep.model.width" = [16, 32, 64, 128, 256]

    [[claims]]
    id = "B3-weights"
    kind = "power_law"
    x = "model.width"
    y = {reduce = "final", metric = "loss"}
    band = [-inf, -0.4]
    where = {"optimizer.name" = "gd", "data.n" = 16}

    [[claims]]
    id = "B3-rate"
    kind = "reaches"
    metric = "loss"
    threshold = 1e-3
    budget = "40*sqrt(data.n)"
    """
)


def _validate(trial: dict) -> TrialConfig:
    return TrialConfig.model_validate(trial)


def _message(source: str, **kwargs) -> str:
    with pytest.raises(StudyError) as info:
        load_study(source, **kwargs)
    return str(info.value)


def test_example_loads_and_round_trips():
    study = load_study(EXAMPLE, validate_trial=_validate)
    assert study.name == "toy-width"
    assert study.base == {"steps": 20, "optimizer": {"lr": 0.05}, "model": {"depth": 2}}
    assert study.axes == ["model.width", "data.n", "optimizer.name", "batch_size"]
    assert [c.kind for c in study.claims] == ["power_law", "reaches"]
    assert study.claims[0].band == (float("-inf"), -0.4)  # type: ignore[union-attr]
    again = Study.model_validate(study.model_dump(exclude_unset=True))
    assert again == study


def test_expansion_count_and_order():
    trials = load_study(EXAMPLE).expand("quick", validate_trial=_validate)
    assert len(trials) == 3 * 2 * 2 * 2  # width × n × zip × seeds
    first, second, third = trials[:3]
    assert first["model"] == {"depth": 2, "width": 16} and first["data"] == {"n": 8}
    assert first["optimizer"] == {"lr": 0.05, "name": "gd"} and first["batch_size"] == 8
    assert (first["seed"], second["seed"]) == (0, 1)  # seeds innermost
    assert third["optimizer"]["name"] == "sgd" and third["batch_size"] == 4  # then zip
    assert trials[4]["data"]["n"] == 16  # then the last grid axis
    assert trials[8]["model"]["width"] == 32
    assert all(t["steps"] == 10 for t in trials)  # quick scale
    assert trials == load_study(EXAMPLE).expand("quick")  # deterministic


def test_paper_scale_overrides_seeds_and_sweep():
    study = load_study(EXAMPLE)
    paper = study.with_scale("paper")
    assert paper.seeds == [0, 1, 2, 3] and paper.sweep["model.width"][-1] == 256
    assert paper.base["steps"] == 20
    assert len(study.expand("paper")) == 5 * 2 * 2 * 4


def test_unknown_scale_lists_scales():
    with pytest.raises(StudyError, match=r"unknown scale 'papr'.*quick, paper.*'paper'"):
        load_study(EXAMPLE).expand("papr")


def test_set_overrides_list_nested_and_win_over_scale():
    study = load_study(
        EXAMPLE,
        overrides=["sweep.model.width=[256, 1024]", "base.steps=100", "base.optimizer.lr=0.1"],
    )
    trials = study.expand("quick")
    assert sorted({t["model"]["width"] for t in trials}) == [256, 1024]
    assert {t["steps"] for t in trials} == {100}  # --set beats scales.quick
    assert study.base["optimizer"] == {"lr": 0.1}  # a swept key (optimizer.name) is refused
    assert {t["optimizer"]["lr"] for t in trials} == {0.1}
    zipped = load_study(EXAMPLE, overrides=["sweep.batch_size=[2, 2]"])
    assert zipped.sweep_zip[0]["batch_size"] == [2, 2]
    claim = load_study(EXAMPLE, overrides=["claims.B3-weights.band=[-1, 0]"]).claims[0]
    assert claim.band == (-1.0, 0.0)  # type: ignore[union-attr]


def test_set_replaces_a_whole_scale_preset_or_says_what_it_takes():
    base = load_study(EXAMPLE)
    emptied = load_study(EXAMPLE, overrides=["scales.paper={}"])
    assert emptied.scales["paper"] == {}
    assert emptied.with_scale("paper").seeds == base.seeds
    steps = load_study(EXAMPLE, overrides=['scales.paper={"base.steps" = 7}'])
    assert steps.with_scale("paper").base["steps"] == 7
    with pytest.raises(StudyError, match=r"scales.paper=3: a scale takes a table"):
        load_study(EXAMPLE, overrides=["scales.paper=3"])


def test_set_unknown_key_suggests():
    message = _message(EXAMPLE, overrides=["seeeds=[1]"])
    assert "unknown key 'seeeds'" in message and "did you mean 'seeds'?" in message
    assert "expected KEY=VALUE" in _message(EXAMPLE, overrides=["base.steps"])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("seeds = [0, 1]", "seeds = [0, 1]\nsweeep = 3"),
            ["sweeep: unknown key", "did you mean 'sweep'?"],
        ),
        (("seeds = [0, 1]", 'seeds = "zero"'), ["seeds: Input should be a valid list", "'zero'"]),
        (("seeds = [0, 1]", "seeds = []"), ["seeds:", "at least 1 item"]),
        (
            ('"data.n" = [8, 16]', '"data.n" = []'),
            ["sweep.data.n: empty list; give at least one value"],
        ),
        (
            ('kind = "power_law"', 'kind = "powerlaw"'),
            [
                "claims[B3-weights].kind: unknown claim kind 'powerlaw'",
                "did you mean 'power_law'?",
                "agrees",
            ],
        ),
        (
            ("band = [-inf, -0.4]", "band = [-inf, -0.4]\nbnd = 1"),
            ["claims[B3-weights].bnd: unknown key", "did you mean 'band'?"],
        ),
        (("band = [-inf, -0.4]", "band = [1, 0]"), ["claims[B3-weights].band", "low ≤ high"]),
        (
            ('y = {reduce = "final", metric = "loss"}', 'y = {reduce = "finale", metric = "loss"}'),
            ["claims[B3-weights].y.reduce", "'final'"],
        ),
        (
            ('y = {reduce = "final", metric = "loss"}', 'y = {reduce = "final", metrc = "loss"}'),
            ["claims[B3-weights].y.metrc: unknown key", "did you mean 'metric'?"],
        ),
        (
            (
                'y = {reduce = "final", metric = "loss"}',
                'y = {reduce = "steps_to_eps", metric = "loss"}',
            ),
            ["needs eps"],
        ),
        (
            ('budget = "40*sqrt(data.n)"', 'budget = "40*sqrt(data.n"'),
            ["claims[B3-rate].budget", "not an arithmetic expression"],
        ),
        (('"batch_size" = [8, 4]', '"batch_size" = [8, 4, 2]'), ["sweep_zip", "equal lengths"]),
        (
            ('provenance = "designed"', 'provenance = "made-up"'),
            ["provenance", "'paper', 'designed' or 'user'"],
        ),
    ],
)
def test_bad_study_names_the_field(edit, expected):
    old, new = edit
    assert old in EXAMPLE
    message = _message(EXAMPLE.replace(old, new, 1))
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_bad_trial_value_names_point_and_field():
    bad = EXAMPLE.replace('"model.width" = [16, 32, 64]', '"model.width" = [16, 0, 64]')
    load_study(bad)  # fine without a trial validator: nothing checks widths
    message = _message(bad, validate_trial=_validate)
    assert "model.width=0" in message and "model.width: Input should be greater than 0" in message
    assert "(and 7 more)" in message  # every point with width 0 is counted, reported once


def test_unknown_trial_key_gets_suggestion():
    bad = EXAMPLE.replace('"data.n" = [8, 16]', '"data.nn" = [8, 16]')
    message = _message(bad, validate_trial=TrialConfig.model_validate)
    assert "data.nn: unknown key; did you mean 'n'?" in message


def test_broken_toml_names_line(tmp_path):
    path = tmp_path / "broken.toml"
    lines = EXAMPLE.splitlines()
    lines[4] = 'seed_paper = "001'  # unterminated string on line 5
    path.write_text("\n".join(lines))
    message = _message(path)
    assert message.startswith(f"{path}:5:") and "invalid TOML" in message


def test_missing_file():
    assert "cannot read the study file" in _message("no/such/study.toml")


def test_claim_kinds_listed():
    assert set(CLAIM_KINDS) == {
        "power_law",
        "slope",
        "bound",
        "monotone",
        "reaches",
        "compare",
        "agrees",
        "within",
        "optimum_shift",
        "seed_spread",
        "threshold",
        "paired_compare",
    }


def test_sizes_and_small_mistakes_are_refused_at_load(tmp_path):
    """A float or bool count, a huge depth, a repeated sweep value, a line break in --set, a
    scale the study does not define, and more trials than max_trials: each refused at load."""
    for old, new, fragment in [
        ('"base.steps" = 10', '"base.steps" = 1e18', "whole number"),
        ('"base.steps" = 10', '"base.steps" = true', "whole number"),
        ("depth = 2", "depth = 100000", "less than or equal to 1024"),
        ("[16, 32, 64]", "[16, 1000000000]", "GiB of memory; use a smaller width"),
    ]:
        assert old in EXAMPLE, old
        with pytest.raises(StudyError, match=fragment):
            load_study(EXAMPLE.replace(old, new, 1), validate_trial=_validate)
    assert "twice" in _message(EXAMPLE.replace("[16, 32, 64]", "[16, 32, 16]", 1))
    assert "line breaks" in _message(EXAMPLE, overrides=["base.steps=5\nseeds=[0]"])
    scales = '[scales.quick]\n"base.steps" = 10\n[scales.paper]\n'
    assert scales in EXAMPLE
    bare = load_study(EXAMPLE.replace(scales, "[scales.paper]\n"))
    with pytest.raises(StudyError, match=r"has no \[scales.smoke\]"):
        bare.expand("smoke")
    assert len(bare.expand("quick")) > 0
    with pytest.raises(StudyError, match=r"expands to 24 trials, more than --max-trials 5"):
        load_study(EXAMPLE).expand("quick", max_trials=5)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.encode())
    assert load_study(bom).name == "toy-width"


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("min(loss)", "min() takes at least 2 argument(s), got 1"),
        ("sqrt(loss, loss)", "sqrt() takes 1 argument(s), got 2"),
        ("-" * 1500 + "loss", "nested more than 100 levels"),
        ("(" * 400 + "loss" + ")" * 400, "not an arithmetic expression"),
        ("loss" + " + loss" * 2000, "at most 2000"),
    ],
)
def test_bad_expressions_are_refused_when_the_study_loads(expr, fragment):
    text = EXAMPLE.replace(
        'y = {reduce = "final", metric = "loss"}', f'y = {{reduce = "expr", expr = "{expr}"}}', 1
    )
    assert text != EXAMPLE
    assert fragment in _message(text)


def test_a_claims_gate_is_a_toml_boolean_not_a_string():
    from pathlib import Path

    import tomllib

    import gdscope

    path = Path(gdscope.__file__).parent / "studies" / "catalog" / "lr-transfer.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    raw["claims"][0]["gate"] = "false"  # "yes", "on", "0" were read as booleans too
    with pytest.raises(ValueError, match="valid boolean"):
        Study.model_validate(raw)
    raw["claims"][0]["gate"] = False
    assert Study.model_validate(raw).claims[0].gate is False
