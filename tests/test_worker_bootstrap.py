"""A script that runs gdscope with workers > 1 and no main guard stops with the fix.

Each spawned worker imports the main script before it starts. The README's
``gs.run_study(..., workers=2)`` saved as a script without ``if __name__ == "__main__":`` ran
again in every worker, which died (StoreBusy); the parent stored every trial as failed
("WorkerDied ... 3 times"), judged INCONCLUSIVE and exited 0. Now the worker refuses with the fix,
and the parent stops on a worker that died before it was ready: no trial stored as failed, the
stored ones kept, and the guarded script resumes.
"""

import multiprocessing
import subprocess
import sys

import pytest

from _stores import kernel_study
from gdscope import api
from gdscope.runners import WorkerPool, run_trials
from gdscope.store import Store

GUARD = 'put the call under `if __name__ == "__main__":`'


def _study(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(kernel_study("tiny-guard", ns="[4, 8]", seeds="[0, 1]"))  # 4 trials
    return path


def _python(script):
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _statuses(results):
    return sorted(row["status"] for row in Store(results, read_only=True).trials())


def test_an_unguarded_script_stops_with_the_fix_stores_no_failed_trial_and_resumes(tmp_path):
    study, results = _study(tmp_path), tmp_path / "res"
    first = api.run_study(study, results=results, overrides=["sweep.data.n=[4]"])
    assert first.ran == 2 and _statuses(results) == ["stopped"] * 2  # an interrupted sweep
    call = f"gs.run_study({str(study)!r}, results={str(results)!r}, workers=2)"
    script = tmp_path / "unguarded.py"
    script.write_text(f"import gdscope as gs\n\nprint('ran', {call}.ran)\n")
    out = _python(script)
    assert out.returncode == 1, out.stderr
    assert "ran" not in out.stdout and "WorkerDied" not in out.stderr
    # each worker says which call in which script to guard
    said = f"run_study() was called while a worker process imports the main script {script}"
    assert said in out.stderr and f"{GUARD} in {script}" in out.stderr
    # the parent stops on a worker that died before it was ready
    last = out.stderr.strip().splitlines()[-1]
    assert "WorkerStartError: worker process " in last, last
    assert "died while starting (exit code 1), before it ran any trial" in last
    assert f"if {script} calls gdscope at its top level, {GUARD}" in last
    assert _statuses(results) == ["stopped"] * 2  # kept; no trial stored as failed
    again = api.run_study(study, results=results)  # as the guarded script would, resumed
    assert (again.trials, again.ran, again.failed) == (4, 2, 0)
    assert _statuses(results) == ["stopped"] * 4  # converged: none failed, none lost


def test_a_worker_that_dies_while_it_starts_breaks_the_pool_and_fails_no_trial(tmp_path):
    study, results = _study(tmp_path), tmp_path / "res"
    script = tmp_path / "dies.py"
    script.write_text(
        "import sys\n\n"
        "if __name__ == '__mp_main__':\n"
        "    sys.exit(3)  # a worker dies while it imports the main script, before it is ready\n"
        "import gdscope as gs\n\n"
        "if __name__ == '__main__':\n"
        f"    print(gs.run_study({str(study)!r}, results={str(results)!r}, workers=2).failed)\n"
    )
    out = _python(script)
    assert out.returncode == 1 and out.stdout == "", out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "WorkerStartError: worker process " in last
    assert "died while starting (exit code 3), before it ran any trial" in last
    assert "No trial was counted as failed" in last
    assert _statuses(results) == []


@pytest.fixture
def importing_main(monkeypatch):
    """Act as a spawned worker that is importing its parent's main script."""
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)


def test_every_entry_point_refuses_in_a_worker_importing_the_main_script(tmp_path, importing_main):
    study, results = _study(tmp_path), tmp_path / "res"
    for call, name in [
        (lambda: api.run_study(study, results=results, workers=2), "run_study"),
        (lambda: api.run_studies([study], results=results), "run_studies"),
        (lambda: api.verify(results), "verify"),
        (lambda: api.report(results), "report"),
        (lambda: run_trials([], len, on_result=print), "run_trials"),
        (lambda: WorkerPool(2).executor(), "WorkerPool.executor"),
    ]:
        with pytest.raises(RuntimeError, match=rf"^{name}\(\) was called while a worker") as e:
            call()
        assert type(e.value).__name__ == "WorkerStartError" and GUARD in str(e.value)
    assert not results.exists()  # nothing written
