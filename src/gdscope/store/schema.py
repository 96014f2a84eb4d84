"""The tables of a results store (``directory/gdscope.sqlite``) and the statuses a rerun skips.

- ``studies(name, scale, spec_json, first_run, last_run)`` — one row per study and scale;
- ``trials(hash, study, scale, config_json, kind, seed, status, reason, error, steps, wall_time_s,
  provenance_json, finished_at)`` — one row per trial config (its content hash); ``study``/``scale``
  and ``config_json`` are those of the run that first stored it;
- ``study_trials(study, scale, hash)`` — which trials belong to which study and scale, as of its
  latest spec (a trial shared by two studies is stored once and linked twice);
- ``series(trial_hash, metric, step, value)`` — every recorded number, long form;
- ``verdicts(study, scale, claim_id, ...)`` — the latest judgement of each claim.

A monitored run (``gdscope.monitor``, :mod:`gdscope.store.runs`) is a ``studies`` row of scale
``MONITOR_SCALE`` (no study has that scale) and one trial of kind ``MONITOR_KIND`` per attempt.
"""

SCHEMA_VERSION = 1
DB_NAME = "gdscope.sqlite"
FINISHED = ("completed", "stopped", "diverged")
"""Statuses of trials a rerun skips; ``"failed"`` trials are run again."""
MONITOR_SCALE = "monitor"
"""The scale of the ``studies`` row of a monitored run (a study's scales are quick, paper, smoke)."""
MONITOR_KIND = "monitor"
"""The ``kind`` of a monitored run's spec and of its trials' configs."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT NOT NULL, scale TEXT NOT NULL, spec_json TEXT NOT NULL,
    first_run TEXT NOT NULL, last_run TEXT NOT NULL,
    PRIMARY KEY (name, scale));
CREATE TABLE IF NOT EXISTS trials (
    hash TEXT PRIMARY KEY, study TEXT NOT NULL, scale TEXT NOT NULL, config_json TEXT NOT NULL,
    kind TEXT, seed INTEGER, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', error TEXT,
    steps INTEGER, wall_time_s REAL, provenance_json TEXT NOT NULL, finished_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS study_trials (
    study TEXT NOT NULL, scale TEXT NOT NULL,
    hash TEXT NOT NULL REFERENCES trials(hash) ON DELETE CASCADE,
    PRIMARY KEY (study, scale, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    trial_hash TEXT NOT NULL REFERENCES trials(hash) ON DELETE CASCADE,
    metric TEXT NOT NULL, step INTEGER NOT NULL, value REAL,
    PRIMARY KEY (trial_hash, metric, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verdicts (
    study TEXT NOT NULL, scale TEXT NOT NULL, claim_id TEXT NOT NULL, status TEXT NOT NULL,
    statistic REAL, ci_lo REAL, ci_hi REAL, band_lo REAL, band_hi REAL, n_points INTEGER,
    reason TEXT NOT NULL DEFAULT '', evidence_json TEXT NOT NULL DEFAULT '[]', reference TEXT,
    judged_at TEXT NOT NULL,
    PRIMARY KEY (study, scale, claim_id));
CREATE INDEX IF NOT EXISTS trials_by_study ON trials (study, scale);
"""
