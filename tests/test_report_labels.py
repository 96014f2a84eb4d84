"""Report labels: reducers of the edge-of-stability claims, and the legends of curve figures.

Before, ``late_over_early`` read "late_over_early loss" and a window that starts or ends where
the sharpness first crosses 0.95·2/η was not mentioned at all: "median sharpness" looked like
the median over the whole run.
"""

from __future__ import annotations

from xml.etree import ElementTree

import matplotlib
import numpy as np

from gdscope.report import canvas, labels, series
from gdscope.report.collect import StudyView
from gdscope.studies.table import TrialRecord

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


def _curves_study(widths=(128, 32), seeds=(1, 0)) -> StudyView:
    """Trials of ``widths`` × ``seeds`` with a loss and a sharpness curve (lr 0.1 for all)."""
    steps = np.arange(60)
    records = [
        TrialRecord(
            hash=f"w{w}s{s}",
            config={"model.width": w, "optimizer.lr": 0.1, "seed": s},
            status="completed",
            series={
                "loss": (steps, np.exp(-steps / w) + 1e-3 * (s + 1)),
                "sharpness": (steps, 10 + 0.3 * steps),
            },
        )
        for w in widths
        for s in seeds
    ]
    return StudyView(name="s", scale="quick", spec={}, claims=[], records=records)


def _texts(svg: str) -> list[str]:
    root = ElementTree.fromstring(svg)
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text]


def test_training_curves_have_a_legend_entry_per_group_in_numeric_order():
    chart = canvas.render(series.training_curves, _curves_study())
    assert chart is not None
    texts = _texts(chart.svg)
    assert texts.count("width=32") == 1 and texts.count("width=128") == 1  # not one per seed
    assert texts.index("width=32") < texts.index("width=128")  # 32 < 128 by value, not text
    assert "Colours run" not in chart.caption
    assert "its seeds share the colour" in chart.caption


def test_the_legend_sits_below_the_axes_and_never_over_a_curve():
    with matplotlib.rc_context(canvas._STYLE):
        for build in (series.training_curves, series.sharpness_curves):
            drawn = build(_curves_study())
            assert drawn is not None
            fig = drawn[0]
            (ax,) = fig.axes
            (legend,) = fig.legends
            colours = {line.get_color() for line in ax.get_lines()[:4]}
            assert len(colours) == 2  # one colour per width, shared by its seeds
            renderer = fig.canvas.get_renderer()  # pyright: ignore[reportAttributeAccessIssue]
            box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert box.y1 < frame.y0  # wholly below the axes
            figure = fig.bbox
            assert box.x0 >= figure.x0 and box.x1 <= figure.x1 and box.y0 >= figure.y0
            names = _reading_order(legend, renderer)
            assert names[:2] == ["width=32", "width=128"]
    assert "2/η = 20 (η = 0.1)" in names  # the sharpness figure names its 2/η line


def _reading_order(legend, renderer) -> list[str]:
    """The legend's entries as a reader reads them: by rows, then left to right."""
    legend.figure.canvas.draw()  # lays the entries out
    boxes = [(t.get_window_extent(renderer), t.get_text()) for t in legend.get_texts()]
    return [name for box, name in sorted(boxes, key=lambda b: (-round(b[0].y0), b[0].x0))]


def test_a_wide_legend_takes_several_columns_inside_the_figure():
    study = _curves_study(widths=(8, 16, 32, 64, 128, 256, 512, 1024), seeds=(0,))
    with matplotlib.rc_context(canvas._STYLE):
        drawn = series.training_curves(study)
        assert drawn is not None
        fig = drawn[0]
        (legend,) = fig.legends
        renderer = fig.canvas.get_renderer()  # pyright: ignore[reportAttributeAccessIssue]
        box = legend.get_window_extent(renderer)
        assert len(legend.get_texts()) == 8
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y0 >= 0
        assert box.height < 8 * 7 * fig.dpi / 72  # fewer rows than entries
        widths = [f"width={w}" for w in (8, 16, 32, 64, 128, 256, 512, 1024)]
        assert _reading_order(legend, renderer) == widths  # read by rows, in numeric order


def test_group_labels_drop_the_key_prefix_unless_it_is_ambiguous():
    assert labels.short_keys(["model.width", "optimizer.lr"]) == {
        "model.width": "width",
        "optimizer.lr": "lr",
    }
    record = TrialRecord(
        hash="h", config={"model.width": 64, "optimizer.lr": 0.01, "seed": 3},
        status="completed", series={},
    )  # fmt: skip
    assert labels.group(record, ["model.width", "optimizer.lr"]) == "width=64, lr=0.01"
