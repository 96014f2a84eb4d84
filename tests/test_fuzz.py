"""A seeded fuzz of the command line: it never hides a failure (issue 13).

Study files mutated from the catalogue's (a key deleted, retyped or misspelt; a claim, a sweep,
a scale or the seeds broken; markup and unicode strings; broken TOML text) and bad flag sets of
every command each end either in a valid run or in a one-line error (``error: ...``, exit 2)
within 10 s, with no traceback and nothing written: no results directory created, an existing
store unchanged. Every case runs ``gdscope`` in this process (a subprocess costs seconds); a
study case is a ``--dry-run`` (validate and plan: milliseconds), and, when that is refused, the
same run for real, which must be refused too. A few valid mutations are run for real at smoke
scale. The cases come from ``random.Random(0)``: the same ones on every run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from _helpers import run_cli
from gdscope.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

CATALOG = sorted((Path(__file__).parents[1] / "src/gdscope/studies/catalog").glob("*.toml"))
STUDY_CASES = 220
SECONDS = 10.0
CHEAP_SMOKE = (  # catalogue studies whose smoke scale runs in well under a second
    "nag-acceleration",
    "heavy-ball-matches-nag",
    "nag-global-convergence",
    "eos-convex-huber",
    "linear-convergence-regression",
)
WRONG: list[Any] = [  # wrong types and values: strings, numbers, booleans, lists, markup
    *("abc", "", " ", "64", "1e3", "null", "[/bold]", "[bold red]x[/]", "ünï✓ 漢字 😀"),
    *("line\nbreak", 'a\tb\\c"d', 3.5, True, False, [1, 2], [], {}, {"a": 1}, -1, 0),
    *(10**12, -(10**12), 2**70, 1e308, math.nan, math.inf, -math.inf),
]
MARKUP = ["[/bold]", "[bold]x[/bold]", "[link=file:///etc]x[/link]", "ünï✓ 漢字 😀", "<b>&amp;</b>"]


# ---------------------------------------------------------------------------------- TOML text
def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def dumps(study: dict[str, Any]) -> str:
    """``study`` as TOML text: one ``key = value`` line per top-level key, tables inline."""
    return "".join(f"{_key(key)} = {_value(value)}\n" for key, value in study.items())


# ---------------------------------------------------------------------------------- mutations
def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into ``tree`` (dict keys and list indices), parents before children."""
    out: list[tuple] = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        out.append((*prefix, key))
        if isinstance(value, dict | list) and len(prefix) < 3:
            out += _paths(value, (*prefix, key))
    return out


def _parent(tree: Any, path: tuple) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def _typo(key: str, rng: random.Random) -> str:
    if not key:
        return "x"
    i = rng.randrange(len(key))
    how = rng.choice(["drop", "double", "swap", "case"])
    if how == "drop" and len(key) > 1:
        return key[:i] + key[i + 1 :]
    if how == "swap" and len(key) > 1:
        i = min(i, len(key) - 2)
        swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
        if swapped != key:
            return swapped
    if how == "case" and key.upper() != key:
        return key.upper()
    return key[:i] + key[i] + key[i:]


def _delete(study: dict, rng: random.Random) -> str:
    path = rng.choice(_paths(study))
    parent = _parent(study, path)
    del parent[path[-1]]
    return f"delete {'.'.join(map(str, path))}"


def _retype(study: dict, rng: random.Random) -> str:
    path = rng.choice(_paths(study))
    value = copy.deepcopy(rng.choice(WRONG))
    _parent(study, path)[path[-1]] = value
    return f"set {'.'.join(map(str, path))} = {value!r}"


def _rename(study: dict, rng: random.Random) -> str:
    keyed = [p for p in _paths(study) if isinstance(p[-1], str)]
    path = rng.choice(keyed)
    parent = _parent(study, path)
    new = _typo(path[-1], rng)
    if new in parent:
        new += "x"
    # keep the order of the keys: rebuild the table with the key renamed in place
    items = [(new if k == path[-1] else k, v) for k, v in parent.items()]
    parent.clear()
    parent.update(items)
    return f"rename {'.'.join(map(str, path))} -> {new}"


def _claim(study: dict, rng: random.Random) -> str:
    claims = study.get("claims") or []
    if not claims:
        study["claims"] = rng.choice(["x", [1], [{}]])
        return "claims broken"
    i = rng.randrange(len(claims))
    claim = claims[i]
    how = rng.choice(
        ["kind", "band", "metric", "x", "reduce", "id", "dup", "role", "gate", "where"]
    )
    if how == "kind":
        claim["kind"] = rng.choice(["power_lawz", "", "PASS", 3, "[/bold]"])
    elif how == "band":
        claim["band"] = rng.choice(
            [[1, 0], [math.nan, 1], [1], [1, 2, 3], "wide", [], ["a", "b"], [math.inf, math.inf]]
        )
    elif how == "metric":
        for part in ("y", "x", "value"):
            if isinstance(claim.get(part), dict):
                claim[part]["metric"] = rng.choice(["lossx", "", "ntk_drift/x", "[/bold]"])
                break
        else:
            claim["y"] = {"reduce": "final", "metric": "no_such_metric"}
    elif how == "x":
        claim["x"] = rng.choice(["model.widthz", "", "seed.x", 3, {"reduce": "final"}])
    elif how == "reduce":
        claim["y"] = {"reduce": rng.choice(["finall", "", "rate_of"]), "metric": "loss"}
    elif how == "id":
        claim["id"] = rng.choice(["", 3, "[/]", "a b", None])
        if claim["id"] is None:
            del claim["id"]
    elif how == "dup":
        claims.append(copy.deepcopy(claim))
    elif how == "role":
        claim["role"] = rng.choice(["papers", "", 1])
    elif how == "gate":
        claim["gate"] = rng.choice(["yes", 2, "false"])
    else:
        claim["where"] = rng.choice([{"model.nope": 1}, "x", {"seed": "zero"}, []])
    return f"claim {i} {how}"


def _sweep(study: dict, rng: random.Random) -> str:
    sweep = study.setdefault("sweep", {})
    if not isinstance(sweep, dict):
        study["sweep"] = {}
        sweep = study["sweep"]
    axes = list(sweep)
    how = rng.choice(["values", "values", "dup", "unknown", "seed", "huge", "zip"])
    if how == "unknown" or not axes:
        key = rng.choice(["model.widht", "nope", "data.n.x", "", "optimizer.lr.", "[/bold]"])
        sweep[key] = [1, 2]
        return f"sweep unknown {key!r}"
    axis = rng.choice(axes)
    if how == "values":
        sweep[axis] = copy.deepcopy(
            rng.choice([[], "64", [[1], [2]], [-1], [0], ["a", "b"], [math.nan], [True, 3.5]])
        )
    elif how == "dup":
        values = list(sweep[axis]) if isinstance(sweep[axis], list) else [1]
        sweep[axis] = [*values, values[0]] if values else [1, 1]
    elif how == "seed":
        sweep["seed"] = [0, 1]
    elif how == "huge":
        sweep[axis] = [10**9, 10**12]
    else:
        study["sweep_zip"] = [{axis: [1, 2], "model.width": [8]}]
    return f"sweep {how} {axis!r}"


def _scale(study: dict, rng: random.Random) -> str:
    scales = study.setdefault("scales", {})
    if not isinstance(scales, dict):
        study["scales"] = scales = {}
    name = rng.choice(["quick", "paper", "smoke", "nope", "Quick"])
    how = rng.choice(["unknown", "retype", "sweep", "seeds", "whole", "steps"])
    table = scales.setdefault(name, {})
    if not isinstance(table, dict):
        scales[name] = table = {}
    if how == "unknown":
        table[rng.choice(["base.stepz", "nope", "sweep", "base..steps", "claims.x"])] = 1
    elif how == "retype":
        scales[name] = rng.choice(["x", 3, [1]])
    elif how == "sweep":
        table["sweep.model.width"] = copy.deepcopy(rng.choice([[], [0], "w", [8, 8]]))
    elif how == "seeds":
        table["seeds"] = copy.deepcopy(rng.choice([[], [-1], [0, 0], "0", [1.5]]))
    elif how == "steps":
        table["base.steps"] = copy.deepcopy(rng.choice([0, -5, "x", 1.5, math.inf]))
    else:
        del scales[name]
        return f"scale {name} deleted"
    return f"scale {name} {how}"


def _strings(study: dict, rng: random.Random) -> str:
    where = rng.choice(["name", "title", "description", "claim_id", "claim_text", "reference"])
    text = rng.choice(MARKUP)
    claims = [c for c in study.get("claims", []) if isinstance(c, dict)]
    if where == "claim_id" and claims:
        claims[0]["id"] = text
    elif where == "claim_text" and claims:
        claims[0][rng.choice(["description", "finding"])] = text
    else:
        study[where if where in ("name", "title", "description", "reference") else "title"] = text
    return f"string {where} = {text!r}"


def _seeds(study: dict, rng: random.Random) -> str:
    study["seeds"] = copy.deepcopy(
        rng.choice([[], [0, 0], [-1], "0", [1.5], [2**63], [True], [[0]], 0])
    )
    return f"seeds = {study['seeds']!r}"


def _top(study: dict, rng: random.Random) -> str:
    how = rng.choice(["unknown", "overrides", "source", "base", "claims", "sweep", "zip"])
    if how == "unknown":
        study[rng.choice(["nmae", "claim", "Seeds", "[/bold]"])] = 1
    elif how in ("overrides", "source"):
        study[how] = "x"
    elif how == "base":
        study["base"] = rng.choice(["x", [], {"kind": "nope"}, {"model.width": "wide"}])
    elif how == "claims":
        study["claims"] = rng.choice(["x", [], [1], [{"id": "c"}]])
    elif how == "sweep":
        study["sweep"] = rng.choice([[], "x", {"a": 1}])
    else:
        study["sweep_zip"] = [{"model.width": [8, 16], "data.n": [4]}]
    return f"top {how}"


def _text(text: str, rng: random.Random) -> tuple[str, str]:
    """A mutation of the file's text itself (mostly invalid TOML)."""
    lines = text.splitlines(keepends=True)
    how = rng.choice(["truncate", "garbage", "dupline", "bracket", "nul", "eq", "bom"])
    if how == "truncate":
        return text[: rng.randrange(1, len(text))], how
    if how == "garbage":
        i = rng.randrange(len(lines))
        junk = rng.choice(["%%%\n", "[base\n", "= 3\n", "x = \n", "[[claims]\n", "[/bold]\n"])
        return "".join([*lines[:i], junk, *lines[i:]]), how
    if how == "dupline":
        keyed = [i for i, line in enumerate(lines) if re.match(r"^[\w\"]", line) and "=" in line]
        i = rng.choice(keyed)
        return "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]), how
    if how == "bracket":
        return text.replace("]", "", 1), how
    if how == "nul":
        i = rng.randrange(len(text))
        return text[:i] + "\x00" + text[i:], how
    if how == "eq":
        return text.replace(" = ", " == ", 1), how
    return "\ufeff" + text.replace("\n", "\r\n"), how  # BOM and CRLF: still valid


MUTATIONS = [_delete, _retype, _rename, _claim, _sweep, _scale, _strings, _seeds, _top]


def _study_cases() -> list[tuple[str, str, str]]:
    """``(case id, study name, TOML text)`` of every mutated study, from ``Random(0)``."""
    rng = random.Random(0)
    sources = {path.stem: path.read_text(encoding="utf-8") for path in CATALOG}
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


# ---------------------------------------------------------------------------------- running
def _gdscope(monkeypatch, capsys, *args: str) -> tuple[int, str, str, float]:
    """Run ``gdscope ARGS`` in this process (``run_cli``); return code, stdout, stderr, seconds."""
    start = time.perf_counter()
    code, out, err = run_cli(monkeypatch, capsys, *args)
    return code, out, err, time.perf_counter() - start


def _assert_outcome(code: int, out: str, err: str, seconds: float, what: str) -> None:
    """A valid run (0) or one line ``error: ...`` (2), no traceback, within ``SECONDS``."""
    assert code in (0, 2), f"{what}: exit {code}\n{out}\n{err}"
    assert "Traceback" not in out + err, f"{what}:\n{out}\n{err}"
    assert seconds < SECONDS, f"{what}: {seconds:.1f} s"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, f"{what}: {len(lines)} lines:\n{err}"
        assert lines[0].startswith("error: ") and len(lines[0]) > 20, f"{what}: {lines[0]}"
        assert not out.strip(), f"{what}: printed besides the error:\n{out}"


def _digest(folder: Path) -> dict[str, str]:
    """What an error must leave unchanged in a results directory (not SQLite's side files)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A results directory with a smoke-scale study stored (and the imports warmed up)."""
    folder = tmp_path_factory.mktemp("fuzz") / "stored"
    argv = ["gdscope", "run", "nag-acceleration", "--scale", "smoke", "--results", str(folder)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [*argv, "--no-report"])
        with pytest.raises(SystemExit) as exit_:
            main()
    assert exit_.value.code == 0 and (folder / "gdscope.sqlite").is_file()
    return folder


@pytest.mark.parametrize(("case", "name", "text"), _study_params())
def test_a_mutated_study_is_a_valid_run_or_a_one_line_error(
    case, name, text, store, tmp_path, monkeypatch, capsys
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
    target = fresh if int(case[:3]) % 2 else store
    before = _digest(store)
    again = _gdscope(monkeypatch, capsys, "run", str(path), "--results", str(target))
    _assert_outcome(*again, f"{case} run")
    assert again[0] == 2, f"{case}: the dry run refused it, the run did not:\n{again[2]}"
    assert not fresh.exists(), case
    assert _digest(store) == before, case


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
def test_a_valid_mutated_study_runs(name, mutate, store, tmp_path, monkeypatch, capsys):
    assert name in CHEAP_SMOKE
    study = tomllib.loads((CATALOG[0].parent / f"{name}.toml").read_text(encoding="utf-8"))
    mutate(study)
    path = tmp_path / f"{name}.toml"
    path.write_text(dumps(study), encoding="utf-8")
    results = tmp_path / "results"
    code, out, err, seconds = _gdscope(
        monkeypatch, capsys, "run", str(path), "--scale", "smoke", "--results", str(results)
    )
    _assert_outcome(code, out, err, seconds, name)
    assert code == 0 and (results / "gdscope.sqlite").is_file() and "report:" in out, err


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
def places(store, tmp_path) -> dict[str, Path]:
    file = tmp_path / "plain.txt"
    file.write_text("not a folder\n")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "gdscope.sqlite").write_text("hi\n")
    study = tmp_path / "cheap.toml"
    study.write_text((CATALOG[0].parent / "nag-acceleration.toml").read_text(encoding="utf-8"))
    return {"STORE": store, "NEW": tmp_path / "new", "FILE": file, "JUNK": junk, "STUDY": study}


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
