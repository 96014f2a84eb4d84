"""``probes.test`` without a held-out set, and a size a data set cannot give, are refused up front.

Before, ``gdscope train --probe test=1`` (sphere: no test split) failed with "probe 'test' needs
eval_data=(x_test, y_test) in train()", the Python API's words, and a study with ``probes.test``
on such a data set ran and failed every trial; ``gdscope train --data digits --n 5000`` said "n
must be at most 1438" without naming the data set (a study's check did). A new-user review.
"""

import pytest

import gdscope as gs
from _helpers import run_cli, user_module
from _stores import study_file
from gdscope.studies import StudyError

HELD_OUT = "probes.test needs a held-out set, and {source} has none"


@pytest.mark.parametrize(
    ("base", "source"),
    [
        ('"data.name" = "sphere"\n"data.n" = 8\n', "data set 'sphere'"),
        ('"data.name" = "custom"\n"data.factory" = "heldout:data"\n', "factory 'heldout:data'"),
    ],
)
def test_a_study_probing_a_test_set_the_data_lack_is_refused_before_writing(
    tmp_path, monkeypatch, base, source
):
    user_module(tmp_path, monkeypatch, "heldout")
    base += '"model.width" = 8\nsteps = 2\nloss = "mse"\nprobes = { loss = 1, test = 1 }'
    path = tmp_path / "s.toml"
    path.write_text(study_file("needs-test", base))
    with pytest.raises(StudyError, match=HELD_OUT.format(source=source)):
        gs.run_study(path, results=tmp_path / "res")
    assert not (tmp_path / "res").exists()


def test_only_the_trials_that_probe_the_test_set_need_one(tmp_path, monkeypatch):
    """The check of a data set once per size (``check_user_code``) keys on the test probe too:
    the first trial without it does not pass the second with it."""
    from gdscope.config import TrialConfig
    from gdscope.trials.user_code import check_user_code

    raw = {"data": {"name": "sphere", "n": 8}, "model": {"width": 8}, "loss": "mse"}
    plain = TrialConfig.model_validate(raw)
    probed = TrialConfig.model_validate({**raw, "probes": {"loss": 1, "test": 1}})
    check_user_code([plain])  # no test probe: no held-out set needed
    with pytest.raises(ValueError, match=HELD_OUT.format(source="data set 'sphere'")):
        check_user_code([plain, probed])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--probe", "test=1"), HELD_OUT.format(source="data set 'sphere'")),
        (
            ("--data", "digits", "--n", "5000"),
            "data (digits): n = 5000 is more than the 1438 rows available in digits split "
            "'train'; use n ≤ 1438",
        ),
        (
            ("--data", "teacher_student"),
            "needs data.options.teacher_width; set it in the study or config (gdscope train: "
            "--data-option teacher_width=VALUE)",
        ),
    ],
)
def test_gdscope_train_names_the_field_and_the_flag(monkeypatch, capsys, args, expected):
    code, out, err = run_cli(monkeypatch, capsys, "train", "--steps", "1", *args)
    assert (code, out) == (2, "")
    assert expected in err and len(err.strip().splitlines()) == 1
