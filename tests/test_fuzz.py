"""A seeded fuzz of the command line: it never hides a failure (issue 13).

Study files mutated from the catalogue's (a key deleted, retyped or misspelt; a claim, a sweep, a
scale or the seeds broken; markup and unicode strings; broken TOML text) and bad flag sets of every
command (in tests/test_fuzz_flags.py) each end either in a valid run or in a one-line error
(``error: ...``, exit 2) within 10 s, with no traceback and nothing written: no results directory
created, an existing store unchanged. Every case runs ``gdscope`` in this process (a subprocess
costs seconds); a study case is a ``--dry-run`` (validate and plan: milliseconds), and, when that
is refused, the same run for real, which must be refused too. A few valid mutations are run for
real at smoke scale. The cases come from ``random.Random(0)``: the same ones on every run.
"""

from __future__ import annotations

import random
import re
import sys
from typing import Any

import pytest

from _fuzz import (
    CATALOG,
    MUTATIONS,
    _assert_outcome,
    _digest,
    _gdscope,
    _text,
    dumps,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

STUDY_CASES = 220
CHEAP_SMOKE = (  # catalogue studies whose smoke scale runs in well under a second
    "nag-acceleration",
    "heavy-ball-matches-nag",
    "nag-global-convergence",
    "eos-convex-huber",
    "linear-convergence-regression",
)


def _renamed(text: str, name: str) -> str:
    """A catalogue study's text under a name of its own (a catalogue name is the catalogue's)."""
    renamed = text.replace(f'name = "{name}"', f'name = "fuzz-{name}"', 1)
    assert renamed != text, name
    return renamed


def _study_cases() -> list[tuple[str, str, str]]:
    """``(case id, study name, TOML text)`` of every mutated study, from ``Random(0)``."""
    rng = random.Random(0)
    sources = {path.stem: _renamed(path.read_text(encoding="utf-8"), path.stem) for path in CATALOG}
    cases = []
    for index in range(STUDY_CASES):
        name = rng.choice(sorted(sources))
        if rng.random() < 0.15:
            text, what = _text(sources[name], rng)
        else:
            study = tomllib.loads(sources[name])
            mutate = rng.choice(MUTATIONS)
            what = mutate(study, rng)
            text = dumps(study)
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", what)[:50]
        cases.append((f"{index:03d}-{name}-{slug}", name, text))
    for index, (name, what, mutate) in enumerate(FOUND, start=len(cases)):
        study = tomllib.loads(sources[name])
        mutate(study)
        cases.append((f"{index:03d}-{name}-found-{what}", name, dumps(study)))
    return cases


FOUND = [  # what earlier runs of this fuzz found, kept whatever the seeded draw gives
    ("nag-acceleration", "reduce-table", lambda s: s["claims"][0]["x"].update(reduce={"a": 1})),
    ("nag-acceleration", "seed-2^63", lambda s: s.update(seeds=[2**63])),  # crashed the store
    ("nag-acceleration", "seed-true", lambda s: s.update(seeds=[True])),  # ran as seed 1
    ("nag-acceleration", "axis-in-axis", lambda s: s["sweep"].update({"data.n.x": [1, 2]})),
    ("rmsprop-nonsmooth", "markup-key", lambda s: s.update({"[/bold]": 1})),
]


STUDIES = _study_cases()


def _study_params() -> list[Any]:
    return [pytest.param(*case, id=case[0]) for case in STUDIES]


@pytest.mark.parametrize(("case", "name", "text"), _study_params())
def test_a_mutated_study_is_a_valid_run_or_a_one_line_error(
    case, name, text, smoke_store, tmp_path, monkeypatch, capsys
):
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    fresh = tmp_path / "results"
    code, out, err, seconds = _gdscope(
        monkeypatch, capsys, "run", str(path), "--dry-run", "--results", str(fresh)
    )
    _assert_outcome(code, out, err, seconds, f"{case} --dry-run")
    assert not fresh.exists(), case
    if code == 0:
        return
    # refused by the dry run: refused by the run too, before it writes anything
    target = fresh if int(case[:3]) % 2 else smoke_store
    before = _digest(smoke_store)
    again = _gdscope(monkeypatch, capsys, "run", str(path), "--results", str(target))
    _assert_outcome(*again, f"{case} run")
    assert again[0] == 2, f"{case}: the dry run refused it, the run did not:\n{again[2]}"
    assert not fresh.exists(), case
    assert _digest(smoke_store) == before, case


def test_the_study_cases_are_seeded_and_distinct():
    assert len(STUDIES) >= 200 + len(FOUND)
    assert _study_cases() == STUDIES  # deterministic
    assert len({c[0] for c in STUDIES}) == len(STUDIES)


VALID = [  # benign mutations of cheap studies, run for real at smoke scale
    ("nag-acceleration", lambda s: s.update(title="[/bold] ünï✓ <b>&amp;</b>")),
    ("nag-acceleration", lambda s: s["scales"]["smoke"].update(seeds=[2**63 - 1])),  # largest
    ("nag-global-convergence", lambda s: s["claims"][0].update(description="[bold]x[/bold]")),
    ("eos-convex-huber", lambda s: s.pop("estimated_cost", None)),
    ("linear-convergence-regression", lambda s: s.update(reference="漢字 😀 [link=x]y[/link]")),
]


@pytest.mark.parametrize(
    ("name", "mutate"), VALID, ids=[f"{i}-{v[0]}" for i, v in enumerate(VALID)]
)
def test_a_valid_mutated_study_runs(name, mutate, smoke_store, tmp_path, monkeypatch, capsys):
    assert name in CHEAP_SMOKE
    text = (CATALOG[0].parent / f"{name}.toml").read_text(encoding="utf-8")
    study = tomllib.loads(_renamed(text, name))
    mutate(study)
    path = tmp_path / f"{name}.toml"
    path.write_text(dumps(study), encoding="utf-8")
    results = tmp_path / "results"
    code, out, err, seconds = _gdscope(
        monkeypatch, capsys, "run", str(path), "--scale", "smoke", "--results", str(results)
    )
    _assert_outcome(code, out, err, seconds, name)
    assert code == 0 and (results / "gdscope.sqlite").is_file() and "report:" in out, err
