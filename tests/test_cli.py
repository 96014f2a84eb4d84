import contextlib
import json
import subprocess
import sys

import pytest

from _helpers import run_cli, sigint_reaches_children
from _stores import study_file


def _gdscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gdscope", *args], capture_output=True, text=True, timeout=120
    )


def test_version():
    import gdscope

    out = _gdscope("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"gdscope {gdscope.__version__}"


def test_help_lists_commands():
    out = _gdscope("--help")
    assert out.returncode == 0
    assert "train" in out.stdout


def test_train_runs_and_reports_status():
    out = _gdscope(
        "train",
        "--model",
        "two_layer",
        "--width",
        "256",
        "--n",
        "8",
        "--d",
        "4",
        "--lr",
        "1.0",
        "--steps",
        "20",
        "--probe",
        "grad_norm=5",
    )
    assert out.returncode == 0, out.stderr
    assert "status: completed after 20 steps" in out.stdout
    assert "grad_norm" in out.stdout


def test_train_json_output():
    out = _gdscope("train", "--width", "8", "--steps", "3", "--json", "--dtype", "float64")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "completed"
    assert doc["config"]["dtype"] == "float64"
    assert len(doc["records"]["loss"][0]) == 4


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--width", "0"], ["model.width", "greater than 0", "got 0"]),
        (["--optimizer", "nesterow"], ["optimizer.name", "nesterov", "accepted"]),
        (["--lr", "0"], ["optimizer.lr", "greater than 0", "got 0"]),
        (["--lr", "-1"], ["optimizer.lr", "got -1"]),
        (["--data", "spere"], ["data.name", "did you mean 'sphere'", "accepted"]),
        (["--parameterization", "mu"], ["model.parameterization", "'mup'"]),
        (["--probe", "sharpnes=3"], ["probes", "unknown probe"]),
        (["--data-option", "k=5"], ["data.options", "no option 'k'", "accepted"]),
    ],
)
def test_bad_arguments_give_one_line_error(args, expected, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "train", "--steps", "1", *args)
    assert code != 0
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])


def test_verify_probes_passes_and_prints_every_check():
    out = _gdscope("verify-probes", "--dtype", "float32", "--seed", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failed" in out.stdout
    for quantity in ("ntk_gram", "hvp", "sharpness", "ggn λ_max", "preconditioned λ_max"):
        assert quantity in out.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["verify-probes", "--dtype", "float16"], "--dtype"),
        (["bench", "--only", "ntkk"], "unknown benchmark 'ntkk'"),
        (["run", "lazy-training", "--results", ""], "the results directory is empty"),
        (["run", "lr-transfer", "--dry-run", "--max-trials", "100"], "more than --max-trials 100"),
    ],
)
def test_other_commands_reject_bad_arguments_in_one_line(args, fragment, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert "Traceback" not in err
    assert fragment in err.strip()


def test_run_writes_the_report_and_report_rewrites_it(tmp_path):
    results = tmp_path / "results"
    out = _gdscope("run", "eos-convex", "--scale", "smoke", "--results", str(results))
    assert out.returncode == 0, out.stderr
    page = results / "report.html"
    assert f"report: {page}" in out.stdout
    html = page.read_text()
    assert "eos-convex" in html and "<svg " in html
    other = tmp_path / "mail" / "page.html"
    out = _gdscope("report", str(results), "-o", str(other))
    assert out.returncode == 0, out.stderr
    assert other.read_text().count("<img") == html.count("<img")
    quiet = tmp_path / "quiet"
    out = _gdscope("run", "eos-convex", "--scale", "smoke", "--results", str(quiet), "--no-report")
    assert out.returncode == 0 and not (quiet / "report.html").exists()


def test_report_of_a_missing_results_dir_is_one_line(tmp_path):
    out = _gdscope("report", str(tmp_path / "nothing"))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: no gdscope results in {tmp_path / 'nothing'} (no gdscope.sqlite); "
        "run a study with --results DIR first"
    )
    assert not (tmp_path / "nothing").exists()


def test_run_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    results = tmp_path / "results"
    out = _gdscope(
        "run", "nag-acceleration", "lazy-training", "--dry-run", "--results", str(results)
    )
    assert out.returncode == 0, out.stderr
    assert "data.n=[4, 8, 16, 32, 64] × method=[gd, nag] × seed=[0, 1, 2]" in out.stdout
    assert "2 studies, 45 trials: 0 stored, 45 to run" in out.stdout
    assert not results.exists()
    out = _gdscope("run", "nag-acceleration", "--dry-run", "--set", "sweep.data.n=[0]")
    assert out.returncode == 2 and out.stderr.startswith("error:") and "data.n" in out.stderr


def test_run_with_an_unknown_scale_writes_nothing(tmp_path):
    results = tmp_path / "x"
    out = _gdscope("run", "lazy-training", "--scale", "bogus", "--results", str(results))
    assert out.returncode == 2
    assert out.stderr.startswith("error: unknown scale 'bogus'") and "Traceback" not in out.stderr
    assert not results.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["show", "DIR"],
        ["verify", "DIR"],
        ["list", "claims", "--results", "DIR"],
        ["run", "eos-convex", "--scale", "smoke", "--results", "DIR"],
        ["run", "eos-convex", "--dry-run", "--results", "DIR"],
    ],
    ids=["show", "verify", "list-claims", "run", "run-dry-run"],
)
def test_a_file_that_is_not_a_store_is_a_one_line_error(tmp_path, args, monkeypatch, capsys):
    path = tmp_path / "gdscope.sqlite"
    path.write_text("hi\n")
    code, _, err = run_cli(monkeypatch, capsys, *(str(tmp_path) if a == "DIR" else a for a in args))
    assert code == 2, err
    assert err.strip() == (
        f"error: {path} is not a gdscope store (file is not a database); "
        "move it away or use another --results DIR"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gdscope.sqlite"]
    assert path.read_text() == "hi\n"


def test_show_counts_the_trials_of_each_study_and_scale(tmp_path):
    from gdscope.store import Store
    from gdscope.training import Trace

    store = Store(tmp_path)
    trace = Trace(status="completed", steps=1, reason="ran 1 steps", records={"loss": ([0], [1.0])})
    store.record_trial("a", "quick", {"seed": 0}, "h1", trace)
    store.record_trial("a", "smoke", {"seed": 1}, "h2", trace)
    store.record_trial("a", "smoke", {"seed": 2}, "h3", "boom")
    store.link_trial("b", "quick", "h1")  # b reused a's trial: it counts for b too
    out = _gdscope("show", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:3] == [
        "a (quick): 1 completed",
        "a (smoke): 1 completed, 1 failed",
        "b (quick): 1 completed",
    ]


MISSING_FILES_STUDY = study_file(
    "fails",
    """
"model.width" = 8
"data.name" = "mnist_idx"
"data.options.images_path" = "/nonexistent/images.idx"
"data.options.labels_path" = "/nonexistent/labels.idx"
steps = 2
""",
)

FAILING_NET = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 1)

    def forward(self, x):
        if x.shape[0] > 2:  # the check before the run builds it on two inputs; training fails
            raise RuntimeError("no batches larger than two")
        return self.lin(x)


def make():
    return Net()
"""


def test_a_missing_data_file_is_refused_before_the_run(tmp_path):
    study = tmp_path / "fails.toml"
    study.write_text(MISSING_FILES_STUDY)
    out = _gdscope("run", str(study), "--results", str(tmp_path / "r"), "--no-report")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: {study}: ") and "/nonexistent/images.idx" in out.stderr
    assert not (tmp_path / "r").exists()


def test_a_failed_trial_is_printed_in_one_line_and_the_run_exits_1(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING_NET)
    study = tmp_path / "fails.toml"
    study.write_text(
        study_file("fails", 'steps = 2\n"model.kind" = "custom"\n"model.factory" = "failing:make"')
    )
    out = _gdscope("run", str(study), "--results", str(tmp_path / "r"), "--no-report")
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("failed trial of fails")]
    assert len(lines) == 1 and "RuntimeError: no batches larger than two" in lines[0]
    assert "1 trial(s) failed" in out.stderr and "Traceback" not in out.stderr


def test_list_claims_names_every_catalogue_claim_in_full_without_torch():
    from pathlib import Path

    import tomllib

    import gdscope

    code = (
        "import sys\n"
        "from gdscope.cli import main\n"
        "sys.argv = ['gdscope', 'list', 'claims', '--results', '/nonexistent']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    catalog = Path(gdscope.__file__).parent / "studies" / "catalog"
    ids = [c["id"] for p in catalog.glob("*.toml") for c in tomllib.loads(p.read_text())["claims"]]
    words = out.stdout.split()
    assert ids and all(claim in words for claim in ids)  # never cut


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("probes", "sharpness"),
        ("models", "resnet"),
        ("datasets", "digits"),
        ("optimizers", "fista"),
    ],
)
def test_list_what_gdscope_knows(what, expected):
    out = _gdscope("list", what)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout.split()


def test_show_json_is_strict_json_with_roles(tmp_path):
    results = str(tmp_path / "r")
    done = _gdscope("run", "eos-convex", "--scale", "smoke", "--results", results, "--no-report")
    assert done.returncode == 0, done.stderr
    out = _gdscope("show", results, "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert shown["trials"][0]["study"] == "eos-convex" and shown["trials"][0]["counts"]
    assert {v["claim_id"] for v in shown["verdicts"]} and all(
        v["role"] in ("paper", "sanity") and v["status"] for v in shown["verdicts"]
    )


@pytest.mark.slow  # ~20-40 s; the default run stays under 10 minutes
def test_a_verdict_on_one_seed_carries_a_warning(tmp_path):
    study = tmp_path / "one.toml"
    study.write_text(study_file("one-seed", "steps = 3"))
    out = _gdscope("run", str(study), "--results", str(tmp_path / "r"), "--no-report")
    assert out.returncode == 0, out.stderr
    assert "warning: this PASS rests on one seed (seeds = [0])" in out.stdout
    study.write_text(study_file("two-seeds", "steps = 3").replace("seeds = [0]", "seeds = [0, 1]"))
    out = _gdscope("run", str(study), "--results", str(tmp_path / "r"), "--no-report")
    assert out.returncode == 0 and "PASS" in out.stdout and "one seed" not in out.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_says_how_many_trials_are_stored_and_that_the_command_resumes(tmp_path, workers):
    """Ctrl-C in a terminal reaches the whole process group: the workers too, with ``--workers 2``."""
    import os
    import signal
    import sqlite3
    import time
    from contextlib import closing

    study = tmp_path / "many.toml"
    study.write_text(
        study_file("many", "steps = 200").replace("seeds = [0]", f"seeds = {list(range(400))}")
    )
    results = tmp_path / "r"
    args = [sys.executable, "-m", "gdscope", "run", str(study), "--results", str(results)]
    args += ["--workers", workers]
    pipe = subprocess.PIPE
    with sigint_reaches_children():
        run = subprocess.Popen(args, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    stored = 0
    deadline = time.monotonic() + 60
    while stored == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        if (results / "gdscope.sqlite").is_file():
            with (
                closing(sqlite3.connect(results / "gdscope.sqlite")) as conn,
                contextlib.suppress(sqlite3.OperationalError),  # tables not made yet
            ):
                stored = conn.execute("SELECT count(*) FROM trials").fetchone()[0]
    os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the command and its workers
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    with closing(sqlite3.connect(results / "gdscope.sqlite")) as conn:
        stored = conn.execute("SELECT count(*) FROM trials").fetchone()[0]
    assert 0 < stored < 400
    assert f"interrupted: {stored} trials of this run are stored in {results}" in err
    assert "the same command resumes" in err and "Traceback" not in err


def test_docs_claims_md_is_the_generated_catalogue_page():
    from pathlib import Path

    from gdscope.cli.claims_doc import claims_markdown

    page = Path(__file__).parents[1] / "docs" / "claims.md"
    assert page.read_text(encoding="utf-8") == claims_markdown(), (
        "docs/claims.md is stale: regenerate it with `gdscope list claims --markdown > docs/claims.md`"
    )
    assert "| E1-width-vs-depth | threshold | paper |" in page.read_text(encoding="utf-8")
