"""``gdscope train``'s table: no column of nans for a probe that does not apply, and step 0 kept.

Review D #14: ``--probe du_bound`` on an MLP printed three rows of ``nan`` (the probe is nan
outside Du et al.'s setting), and one probe with no step-0 value (``preconditioned_sharpness``:
no preconditioner before the first update) dropped the step-0 column of every metric.
"""

import json
import math

from _helpers import run_cli
from gdscope.cli.trace_table import NOT_MEASURED, trace_table, unmeasured_line
from gdscope.training import Trace

TINY = ["--model", "mlp", "--width", "8", "--n", "16", "--d", "4", "--dtype", "float64"]
UNMEASURED = "not in the table, nan at every checkpoint"


def _train(monkeypatch, capsys, *args: str) -> list[str]:
    code, out, err = run_cli(monkeypatch, capsys, "train", *TINY, "--steps", "10", *args)
    assert code == 0, err
    return out.splitlines()


def _rows(lines: list[str]) -> dict[str, list[str]]:
    """The table's rows by their first cell (a step, or a metric when transposed)."""
    return {line.split()[0]: line.split()[1:] for line in lines if line.strip()}


def test_a_probe_that_does_not_apply_is_named_once_not_tabulated(monkeypatch, capsys):
    lines = _train(monkeypatch, capsys, "--probe", "du_bound=5", "--probe", "sharpness=5")
    header = lines[0].split()
    assert header == ["step", "loss", "sharpness"], lines[0]
    assert not any("nan" in line for line in lines[:4]), lines
    notes = [line for line in lines if line.startswith(UNMEASURED)]
    assert len(notes) == 1, lines
    assert notes[0].endswith("does not apply to the run): du_bound"), notes[0]


def test_the_step_0_row_stays_when_one_probe_has_no_step_0_value(monkeypatch, capsys):
    lines = _train(
        monkeypatch, capsys, "--optimizer", "adam", "--lr", "0.01", "--probe",
        "preconditioned_sharpness=5",
    )  # fmt: skip
    header = lines[0].split()
    assert header[:2] == ["step", "loss"] and "preconditioned_sharpness" in header, lines[0]
    rows = _rows(lines[1:4])
    assert list(rows) == ["0", "5", "10"], lines
    loss_0, *rest_0 = rows["0"]
    assert math.isfinite(float(loss_0))
    assert rest_0 == [NOT_MEASURED] * (len(header) - 2), rows["0"]
    assert NOT_MEASURED not in rows["5"], rows["5"]
    assert not any(line.startswith(UNMEASURED) for line in lines), lines


def _trace(records: dict[str, tuple[list[int], list[float]]]) -> Trace:
    return Trace("completed", 10, "ran 10 steps", records)


def test_a_probe_with_only_some_metrics_nan_is_named_with_them():
    nan = math.nan
    trace = _trace(
        {
            "loss": ([0, 5, 10], [1.0, 0.5, 0.25]),
            "sandwich_lower": ([0, 5, 10], [nan, nan, nan]),
            "sandwich_upper": ([0, 5, 10], [2.0, 2.5, 3.0]),
            "grad_norm": ([0, 5, 10], [1.0, nan, 0.5]),  # nan at one checkpoint: tabulated
        }
    )
    line = unmeasured_line(trace, ["loss", "sandwich", "grad_norm"])
    assert line.endswith("does not apply to the run): sandwich (sandwich_lower)"), line
    assert [c.header for c in trace_table(trace).columns] == [
        "step",
        "loss",
        "sandwich_upper",
        "grad_norm",
    ]


def test_nothing_is_said_when_every_metric_was_measured():
    trace = _trace({"loss": ([0, 5], [1.0, 0.5]), "ntk_kappa": ([0, 5], [math.inf, math.inf])})
    assert unmeasured_line(trace, ["loss", "ntk_spectrum"]) == ""
    assert [c.header for c in trace_table(trace).columns] == ["step", "loss", "ntk_kappa"]


def test_probes_defined_for_mse_apply_under_gdscope_train(monkeypatch, capsys):
    """The command counts steps through a wrapper of the loss; du_bound and the infinite-width
    reference asked ``loss_fn is mse`` and so were nan under ``gdscope train`` in Du et al.'s own
    setting (the wrapper now carries ``__wrapped__``: :func:`gdscope.losses.is_mse`)."""
    args = ["train", "--model", "two_layer", "--width", "64", "--loss", "mse", "--steps", "10"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--probe", "du_bound=5")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["step", "loss", "du_bound", "du_step", "du_rate"], lines[0]
    assert not any(line.startswith(UNMEASURED) for line in lines), lines
    mlp = ["--model", "mlp", "--width", "16", "--loss", "mse", "--probe", "linearization_gap=5"]
    code, out, err = run_cli(monkeypatch, capsys, "train", *mlp, "--steps", "5", "--json")
    assert code == 0, err
    assert "linearization_infinite_gap" in json.loads(out)["records"]


def test_json_output_is_strict_json(monkeypatch, capsys):
    """A probe's nan is null in ``--json`` (bare NaN is not JSON: jq and strict parsers refuse it)."""
    code, out, err = run_cli(
        monkeypatch, capsys, "train", *TINY, "--steps", "5", "--probe", "du_bound=5", "--json"
    )
    assert code == 0, err

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    records = json.loads(out, parse_constant=refuse)["records"]
    assert records["du_bound"][1] == [None, None]
