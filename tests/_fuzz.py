"""Helpers of tests/test_fuzz.py and tests/test_fuzz_flags.py: the seeded mutations of study
files (and their TOML text), and ``gdscope`` run in this process with its outcome checked."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
import time
from pathlib import Path
from typing import Any

from _helpers import run_cli

CATALOG = sorted((Path(__file__).parents[1] / "src/gdscope/studies/catalog").glob("*.toml"))
SECONDS = 10.0
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
