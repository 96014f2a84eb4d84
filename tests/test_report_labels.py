"""Report labels of the reducers the edge-of-stability claims use (late_over_early, crossings).

Before, ``late_over_early`` read "late_over_early loss" and a window that starts or ends where
the sharpness first crosses 0.95·2/η was not mentioned at all: "median sharpness" looked like
the median over the whole run.
"""

from __future__ import annotations

from gdscope.report import labels

FROM_EDGE = {"metric": "sharpness", "at_least": "0.95*2/optimizer.lr"}


def test_late_over_early_reads_as_a_ratio_of_medians():
    assert labels.reducer({"reduce": "late_over_early", "metric": "loss"}) == (
        "median of last 25% / first 25% of loss"
    )
    spec = {"reduce": "late_over_early", "metric": "kappa", "fraction": 0.1}
    assert labels.reducer(spec) == "median of last 10% / first 10% of κ"


def test_window_crossings_are_named_in_reducer_labels():
    plateau = {"reduce": "median_window", "metric": "sharpness", "window_from": FROM_EDGE}
    assert labels.reducer(plateau) == "median sharpness from the first sharpness ≥ 0.95·2/η"
    rise = {
        "reduce": "final_over_initial",
        "metric": "sharpness",
        "window_until": {"at_least": "0.9*2/optimizer.lr"},  # metric: the reducer's
    }
    assert labels.reducer(rise) == "final / initial sharpness until the first sharpness ≥ 0.9·2/η"
    falls = {"reduce": "late_over_early", "metric": "loss", "window_from": FROM_EDGE}
    assert labels.reducer(falls).endswith("of loss from the first sharpness ≥ 0.95·2/η")
    bumps = {
        "reduce": "max_rise",
        "metric": "loss",
        "relative": True,
        "window": [0, 500],
        "window_until": {"metric": "loss", "at_most": 0.01},
    }
    assert labels.reducer(bumps) == (
        "largest relative rise of loss over steps 0–500 until the first loss ≤ 0.01"
    )


def test_an_expression_threshold_is_shown_by_its_label_where_a_number_goes():
    assert labels.number({"reduce": "expr", "expr": "0.95*2/optimizer.lr"}) == "0.95·2/η"
    assert labels.number(3.8) == "3.8"
    assert labels.expression("optimizer.lr_fraction*x**2") == "optimizer.lr_fraction·x^2"
