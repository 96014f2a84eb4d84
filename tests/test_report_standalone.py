"""Report parts that need no stored study: an empty folder, log-axis labels, natural sorting."""

import pytest

from gdscope.report import render_report
from gdscope.store import StoreError


def test_a_directory_without_a_store_is_refused(tmp_path):
    with pytest.raises(StoreError, match="no gdscope results"):
        render_report(tmp_path)


def test_log_axes_are_labelled_with_plain_numbers():
    import matplotlib

    from gdscope.report import canvas

    with matplotlib.rc_context(canvas._STYLE):
        fig, ax = canvas.figure()
        ax.loglog([1.0, 10.0, 1000.0], [0.001, 0.1, 10.0])
        canvas.plain_log_axes(fig)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert "10" in labels and "0.01" in labels
    assert not any("$" in text or "mathdefault" in text for text in labels)
    assert len(ax.xaxis.get_minorticklocs()) == 0
    with matplotlib.rc_context(canvas._STYLE):  # widths 32…512: more than the one tick at 100
        fig, ax = canvas.figure()
        ax.loglog([32.0, 512.0], [1.0, 2.0])
        canvas.plain_log_axes(fig)
        fig.canvas.draw()
        low, high = ax.get_xlim()
        shown = [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
    assert shown == ["50", "100", "200", "500"]


def test_groups_and_seeds_sort_by_value_not_text():
    from gdscope.report import labels

    assert sorted([128, 256, 32, 64], key=labels.natural) == [32, 64, 128, 256]
    widths = ["model.width=128", "model.width=32", "model.width=64"]
    assert sorted(widths, key=labels.natural) == [widths[1], widths[2], widths[0]]
