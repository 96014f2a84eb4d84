"""What ``gdscope run --dry-run`` says of a study: its sweep as the grid it is, and its cost.

A new user's review found three things that misread. Zipped axes (``sweep_zip``) were shown as
a product: ``model.output_scale=[5 values] × optimizer.lr=[5 values] × seed=[0, 1, 2]`` reads
as 75 trials beside a trials column of 15. ``--set`` that changed the study left its
``estimated_cost`` (measured as shipped) beside the new trial count without a word. A folder
given as the study file was said not to exist.
"""

from _helpers import run_cli
from gdscope import api


def test_zipped_axes_are_one_factor_of_the_grid():
    plan = api.plan_study("lazy-scaling", results="/nonexistent-gdscope-results")
    assert [list(group) for group in plan.groups] == [
        ["model.output_scale", "optimizer.lr"],
        ["seed"],
    ]
    sizes = [len(next(iter(group.values()))) for group in plan.groups]
    assert sizes[0] * sizes[1] == plan.trials == 15
    assert plan.axes["seed"] == [0, 1, 2]  # the flat view of every key stays as it was


def test_the_dry_run_prints_zipped_axes_as_pairs(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch, capsys, "run", "lazy-scaling", "--dry-run", "--results", str(tmp_path / "r")
    )
    assert code == 0, err
    flat = " ".join(out.split())  # the sweep column wraps
    assert "(model.output_scale, optimizer.lr)=[(1.0, 1.0), (2.0, 0.25), (4.0, 0.0625)" in flat
    assert "× seed=[0, 1, 2]" in flat
    assert "model.output_scale=[" not in flat and "optimizer.lr=[" not in flat
    assert not (tmp_path / "r").exists()


def test_a_long_zipped_group_says_how_many_points_it_has():
    from gdscope.cli.printing import _sweep

    plan = api.plan_study("overparam-width-needed", results="/nonexistent-gdscope-results")
    text = _sweep(plan.groups)
    assert text.startswith("(data.n, batch_size, model.width)=[(8, 2, 4), (8, 2, 8), "), text
    assert text.endswith(", … 34 in all] × seed=[0, 1, 2, 3, 4]"), text  # 34 × 5 = 170 trials
    assert plan.trials == 170


def test_the_cost_of_a_changed_study_is_said_to_be_the_shipped_ones(tmp_path, monkeypatch, capsys):
    args = ["run", "nag-acceleration", "--scale", "paper", "--dry-run"]
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        *args,
        "--set",
        "sweep.data.n=[8,16,32,64,128]",
        "--results",
        str(tmp_path / "r"),
    )
    assert code == 0, err
    assert "1 study, 100 trials" in out
    assert (
        "nag-acceleration (paper) estimated cost of the study as shipped, not as --set changes "
        "it: 200 trials" in out
    )
    code, out, err = run_cli(monkeypatch, capsys, *args, "--results", str(tmp_path / "r"))
    assert code == 0, err
    assert "nag-acceleration (paper) estimated cost: 200 trials" in out  # unchanged: no note


def test_a_folder_given_as_a_study_file_is_called_a_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "studies"
    folder.mkdir()
    results = tmp_path / "r"
    for extra in (["--dry-run"], []):
        code, out, err = run_cli(
            monkeypatch, capsys, "run", str(folder), *extra, "--results", str(results)
        )
        assert code == 2 and out == ""
        assert err.strip() == (
            f"error: study file {str(folder)!r} is a folder; give a .toml file or a catalogue "
            "name (gdscope list claims names each study)"
        )
        assert not results.exists()
    code, _, err = run_cli(monkeypatch, capsys, "run", str(tmp_path / "no.toml"), "--dry-run")
    assert code == 2 and "does not exist" in err
