import csv
import io
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from gdscope.store import Store
from gdscope.store.export import long_form, to_pandas, write_csv, write_parquet, write_verdicts
from gdscope.training import Trace

CLI = (sys.executable, "-m", "gdscope.cli")

CONFIG_A = {"kind": "network", "model": {"width": 8}, "optimizer": {"lr": 0.1}, "seed": 0}
CONFIG_B = {
    "kind": "network",
    "model": {"width": 16, "hidden": [4, 4]},
    "optimizer": {"lr": "auto_kernel"},
    "seed": 1,
}


def _trace(scale: float) -> Trace:
    trace = Trace(status="completed", steps=2, reason="", wall_time_s=0.1)
    trace.record(0, {"loss": 1.0 * scale, "sharpness": math.nan})
    trace.record(1, {"loss": 0.1 * scale + 1e-17, "sharpness": math.inf})
    trace.record(2, {"loss": 1 / 3 * scale})
    return trace


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "results")
    store.record_study("alpha", "quick", {"name": "alpha"})
    store.record_study("beta", "quick", {"name": "beta"})
    store.record_trial("alpha", "quick", CONFIG_A, "h-a", _trace(1.0))
    store.record_trial("beta", "quick", CONFIG_B, "h-b", _trace(2.0))
    store.link_trial("beta", "quick", "h-a")  # shared trial: once per study
    store.record_trial("beta", "quick", {"kind": "network", "seed": 9}, "h-f", ValueError("boom"))
    return store


def test_long_form_has_one_row_per_study_trial_metric_step(store):
    columns, rows = long_form(store)
    rows = list(rows)
    assert columns[:4] == ["study", "scale", "hash", "status"]
    assert columns[-3:] == ["metric", "step", "value"]
    assert set(columns[4:-3]) == {"kind", "model.width", "model.hidden", "optimizer.lr", "seed"}
    per_trial = 5  # loss at 3 steps, sharpness at 2
    assert len(rows) == 3 * per_trial + 1  # alpha:h-a, beta:h-a, beta:h-b; failed beta:h-f: one
    [failed] = [r for r in rows if r[2] == "h-f"]
    assert failed[3] == "failed" and failed[-3:] == (None, None, None)
    keyed = {(r[0], r[2], r[-3], r[-2]): r[-1] for r in rows}
    assert keyed[("beta", "h-a", "loss", 1)] == 0.1 + 1e-17
    assert math.isnan(keyed[("alpha", "h-a", "sharpness", 0)])
    assert keyed[("beta", "h-b", "sharpness", 1)] == math.inf


def test_unknown_study_names_the_stored_ones(store):
    with pytest.raises(ValueError, match=r"study='gamma' is not in .* \(stored: alpha, beta\)"):
        long_form(store, "gamma")


def test_csv_round_trips_every_value_exactly(store):
    buffer = io.StringIO()
    count = write_csv(store, buffer, study="beta")
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert count == len(rows) == 2 * 5 + 1
    frame = to_pandas(store, "beta")
    for row, (_, expected) in zip(rows, frame.iterrows(), strict=True):
        if row["status"] == "failed":
            assert row["metric"] == row["step"] == row["value"] == ""
            continue
        value = float(row["value"])
        assert (value == expected["value"]) or (math.isnan(value) and math.isnan(expected["value"]))
        assert row["hash"] == expected["hash"] and int(row["step"]) == expected["step"]
    assert {r["model.hidden"] for r in rows} == {"", "[4, 4]"}
    assert {r["optimizer.lr"] for r in rows} == {"0.1", "auto_kernel", ""}  # "": failed trial


def test_to_pandas_matches_the_long_form_and_store_method(store):
    frame = store.to_pandas()
    columns, rows = long_form(store)
    assert list(frame.columns) == columns and len(frame) == len(list(rows))
    assert frame["value"].dtype == np.float64 and str(frame["step"].dtype) == "Int64"
    assert frame.loc[frame["hash"] == "h-b", "model.width"].eq(16).all()
    assert frame["value"].isna().sum() == 4  # one NaN per trial per study, and the failed trial


def test_parquet_round_trips_with_mixed_type_columns(store, tmp_path):
    path = tmp_path / "out.parquet"
    count = write_parquet(store, path)
    back = pd.read_parquet(path)
    frame = to_pandas(store)
    assert count == len(back) == len(frame)
    np.testing.assert_array_equal(back["value"].to_numpy(), frame["value"].to_numpy())
    assert set(back["optimizer.lr"].dropna()) == {"0.1", '"auto_kernel"'}
    assert set(back["model.hidden"].dropna()) == {"[4, 4]"}


def test_cli_export_csv_to_stdout_and_parquet_to_file(store, tmp_path):
    out = subprocess.run(
        [*CLI, "export", str(store.directory), "--csv", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[0].startswith("study,scale,hash,status,")
    assert len(out.splitlines()) == 1 + 16
    target = tmp_path / "x.parquet"
    subprocess.run(
        [*CLI, "export", str(store.directory), "--parquet", str(target), "--study", "alpha"],
        capture_output=True,
        check=True,
    )
    assert set(pd.read_parquet(target)["study"]) == {"alpha"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--csv", "-", "--study", "gamma"], "study='gamma' is not in"),
        ([], "give --csv FILE|-, --parquet FILE and/or --verdicts FILE|-"),
    ],
)
def test_cli_export_errors_are_one_line(store, args, message):
    result = subprocess.run(
        [*CLI, "export", str(store.directory), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_export_of_a_missing_store_says_so(tmp_path):
    result = subprocess.run(
        [*CLI, "export", str(tmp_path / "none"), "--csv", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "no gdscope results in" in result.stderr
    assert not (tmp_path / "none").exists()


def test_files_go_into_new_folders_and_a_bad_path_is_one_line(store, tmp_path):
    assert write_csv(store, tmp_path / "new" / "deep" / "out.csv") == 16
    (tmp_path / "file").write_text("")
    result = subprocess.run(
        [*CLI, "export", str(store.directory), "--csv", str(tmp_path / "file" / "x.csv")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_parquet_keeps_int_and_float_sweep_values_numeric(tmp_path):
    store = Store(tmp_path / "r")
    store.record_study("s", "quick", {"name": "s"})
    for i, lr in enumerate([1, 0.5]):  # a TOML sweep lr = [1, 0.5]: an int and a float
        store.record_trial("s", "quick", {"optimizer": {"lr": lr}, "seed": i}, f"h{i}", _trace(1))
    write_parquet(store, tmp_path / "x.parquet")
    back = pd.read_parquet(tmp_path / "x.parquet")
    assert back["optimizer.lr"].dtype == np.float64
    assert sorted(set(back["optimizer.lr"])) == [0.5, 1.0]


def test_verdicts_export_as_csv_rows(store, tmp_path):
    from gdscope.studies.verdict import Verdict

    verdict = Verdict(
        claim_id="c1", status="PASS", statistic=0.5, reason="fine", ci=(0.4, 0.6), band=(0.0, 1.0),
        n_points=3, evidence=[], reference=None,
    )  # fmt: skip
    store.record_verdicts("alpha", "quick", [verdict])
    result = subprocess.run(
        [*CLI, "export", str(store.directory), "--verdicts", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["study"], r["claim_id"], r["status"]) for r in rows] == [("alpha", "c1", "PASS")]
    assert (float(rows[0]["ci_lo"]), float(rows[0]["band_hi"]), rows[0]["n_points"]) == (
        0.4,
        1.0,
        "3",
    )
    assert write_verdicts(store, tmp_path / "v.csv") == 1
