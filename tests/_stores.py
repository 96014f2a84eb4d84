"""Compare two results stores by what a study produced, ignoring when and where it ran."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np

from gdscope.store import Store


def snapshot(store: Store) -> dict:
    """Everything a rerun must reproduce: trials, memberships, series (bitwise) and verdicts."""
    with closing(sqlite3.connect(store.path)) as conn:
        trials = conn.execute(
            "SELECT hash, study, scale, config_json, kind, seed, status, reason, steps FROM trials "
            "ORDER BY hash"
        ).fetchall()
        links = conn.execute("SELECT * FROM study_trials ORDER BY study, scale, hash").fetchall()
        series = conn.execute(
            "SELECT trial_hash, metric, step, value FROM series ORDER BY trial_hash, metric, step"
        ).fetchall()
        verdicts = conn.execute(
            "SELECT study, scale, claim_id, status, statistic, ci_lo, ci_hi, band_lo, band_hi, "
            "n_points, reason, evidence_json FROM verdicts ORDER BY study, scale, claim_id"
        ).fetchall()
        studies = conn.execute(
            "SELECT name, scale, spec_json FROM studies ORDER BY name"
        ).fetchall()
    return {
        "trials": trials,
        "links": links,
        "series": [
            (h, m, s, np.float64(np.nan if v is None else v).tobytes()) for h, m, s, v in series
        ],
        "verdicts": verdicts,
        "studies": studies,
    }


def assert_same_results(one: Store, two: Store) -> None:
    """Assert two stores hold the same trials, series (bitwise), links, studies and verdicts."""
    a, b = snapshot(one), snapshot(two)
    for part in a:
        assert a[part] == b[part], f"stores differ in {part}"


def integrity_ok(store: Store) -> bool:
    """SQLite's own check of the file: no corruption."""
    with closing(sqlite3.connect(store.path)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def study_file(
    name: str, base: str, *, claim: str = 'y = { reduce = "final", metric = "loss" }'
) -> str:
    """A minimal study file: one seed, the ``base`` table's lines, one ``within`` claim on ``claim``."""
    return (
        f'name = "{name}"\ntitle = "t"\nseed_paper = "000"\nreference = "test"\n'
        f'provenance = "designed"\nclaim_ids = ["X"]\nseeds = [0]\n[base]\n{base.strip()}\n'
        f'[[claims]]\nid = "c"\nkind = "within"\n{claim}\nband = [0, 10]\n'
    )


KERNEL_BASE = """
kind = "kernel_dynamics"
gram = "h_infinity"
method = "gd"
steps_per_kappa = 40
tol = 1e-10
"data.d" = 4
"""
"""The ``[base]`` of a tiny kernel-level GD rate trial (milliseconds), as study-file text."""


def kernel_study(
    name: str, ns: str = "[4, 8, 16, 32]", seeds: str = "[0, 1, 2]", band: str = "-1.1, -0.9"
) -> str:
    """A tiny kernel-level GD rate study (milliseconds a trial) as study-file text.

    ``ns``, ``seeds`` and ``band`` are TOML text: the swept ``data.n``, the seeds and the band of
    its one claim, ``gd-exponent`` (the exponent of 1 − ρ in κ; −1 for GD).
    """
    return f"""
name = "{name}"
claim_ids = ["D1"]
title = "tiny kernel-level GD rate study"
seed_paper = "003"
reference = "test"
provenance = "designed"
seeds = {seeds}

[base]{KERNEL_BASE}
[sweep]
"data.n" = {ns}

[[claims]]
id = "gd-exponent"
kind = "power_law"
x = {{ reduce = "initial", metric = "kappa" }}
y = {{ reduce = "one_minus_rate", metric = "residual" }}
band = [{band}]
"""
