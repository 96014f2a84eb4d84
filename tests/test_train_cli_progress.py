"""``gdscope train``'s progress: steps done / total, the loss and the final status on a terminal;
nothing on piped output (``--json`` stays pure JSON); Ctrl-C says how far it got."""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

import gdscope.cli.trace_table as trace_table
import gdscope.cli.train as train_cli
from _helpers import assert_close, sigint_reaches_children
from gdscope.config import TrialConfig
from gdscope.trials.trial import build_trial

GDSCOPE = str(Path(sys.executable).with_name("gdscope"))
TINY = ["--width", "8", "--n", "16", "--d", "4", "--dtype", "float64"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
pty = pytest.importorskip("pty")  # POSIX terminals


def _config(**changes) -> TrialConfig:
    raw = {
        "model": {"kind": "mlp", "width": 8, "depth": 2},
        "data": {"name": "sphere", "n": 16, "d": 4},
        "optimizer": {"name": "gd", "lr": 0.1},
        "steps": 30,
        "probes": {"loss": 1},
        "dtype": "float64",
        **changes,
    }
    return TrialConfig.model_validate(raw)


def _shown(monkeypatch, config: TrialConfig):
    """Run ``config`` with the bar on a fake terminal; return the trace and the bar's last line."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(train_cli, "stderr", console)
    trace = train_cli._run_with_progress(build_trial(config), show=True)
    lines = [ANSI.sub("", line) for line in re.split(r"[\r\n]", screen.getvalue())]
    return trace, [line for line in lines if line.strip()][-1]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, "completed"),
        ({"stop": {"loss_below": 0.5}}, "stopped"),
        ({"optimizer": {"name": "gd", "lr": 300.0}}, "diverged"),
        ({"batch_size": 4}, "completed"),
        ({"optimizer": {"name": "fista", "lr": 0.1, "l1": 1e-3}}, "completed"),
    ],
    ids=["completed", "stopped", "diverged", "mini-batch", "fista"],
)
def test_the_bar_ends_with_the_status_steps_done_and_last_loss(monkeypatch, changes, status):
    trace, last = _shown(monkeypatch, _config(**changes))
    assert trace.status == status
    assert last.startswith(status), last
    assert f"{trace.steps}/30 steps" in last, last
    assert f"loss {train_cli.fmt(trace.final('loss'))}" in last, last


def _watched(config: TrialConfig):
    trial = build_trial(config)
    seen = []
    watch = train_cli.StepWatch(trial.optimizer, trial.loss_fn, lambda d, v: seen.append((d, v)))
    trial.loss_fn = watch.loss_fn
    trace = trial.run()
    assert [d for d, _ in seen] == list(range(1, config.steps + 1))
    return [v for _, v in seen], trace.records["loss"][1][: config.steps]


def test_the_watched_loss_is_the_full_batch_steps_loss():
    """After step k the watch holds the loss of step k - 1, as the trace recorded it."""
    watched, recorded = _watched(_config(probes={"loss": 1, "sharpness": 5, "grad_norm": 1}))
    assert_close(watched, recorded, rtol=1e-12, atol=1e-12)


def test_the_watched_loss_is_the_mini_batchs_not_a_probes():
    """``grad_norm`` takes the full-data loss with autograd after the batch's: not watched."""
    watched, full = _watched(_config(batch_size=4, probes={"loss": 1, "grad_norm": 1}))
    differ = [abs(w - f) > 1e-9 * abs(f) for w, f in zip(watched, full, strict=True)]
    assert sum(differ) >= 25, list(zip(watched, full, strict=True))


def _in_terminal(args: list[str], interrupt_when: str | None = None, limit_s: float = 60):
    """Run ``gdscope ARGS`` with stdout and stderr on a pseudo-terminal; return (code, screen).

    With ``interrupt_when`` (a regular expression), send SIGINT (as Ctrl-C does) once the
    screen shows it.
    """
    main, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    with sigint_reaches_children():
        process = subprocess.Popen(
            [GDSCOPE, *args], stdin=child, stdout=child, stderr=child, env=env, start_new_session=True
        )  # fmt: skip
    os.close(child)
    screen, sent, deadline = b"", False, time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                screen += chunk
            text = ANSI.sub("", screen.decode(errors="replace"))
            if interrupt_when and not sent and re.search(interrupt_when, text):
                process.send_signal(signal.SIGINT)
                sent = True
            if not ready and process.poll() is not None:
                break
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    return code, ANSI.sub("", screen.decode(errors="replace"))


def test_a_terminal_shows_the_progress_and_the_final_status():
    code, screen = _in_terminal(["train", *TINY, "--steps", "40", "--lr", "300"])
    assert code == 0, screen
    bar = [line for line in re.split(r"[\r\n]", screen) if "steps  loss" in line]
    assert bar, screen
    assert re.match(r"diverged .* \d+/40 steps  loss \S+", bar[-1].strip()), bar[-1]
    assert "status: diverged" in screen


def test_ctrl_c_says_how_many_steps_were_done():
    code, screen = _in_terminal(
        ["train", *TINY, "--steps", "100000000"], interrupt_when=r" [1-9]\d*/100000000 steps"
    )
    assert code == 130, screen
    found = re.search(r"interrupted after (\d+) of 100000000 steps \(last loss \S+\)", screen)
    assert found, screen
    assert int(found[1]) > 0
    assert "nothing is stored" in screen
    assert "Traceback" not in screen


def test_piped_output_has_no_progress_and_json_stays_json():
    out = subprocess.run(
        [GDSCOPE, "train", *TINY, "--steps", "25", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["steps"] == 25
    assert "steps" not in out.stderr and "━" not in out.stderr, out.stderr
    assert "━" not in out.stdout


def test_the_table_shows_the_hessian_density_as_its_top_node_and_negative_mass(monkeypatch, capsys):
    """``--probe hessian_density=5`` printed no column (its records are a family of nodes and
    weights); the top node is the sharpness, the mass below zero a fraction."""
    from _helpers import run_cli

    args = ["train", "--data", "sphere", "--n", "32", "--d", "4", "--lr", "0.02", "--steps", "10"]
    args += ["--probe", "hessian_density=5", "--probe", "sharpness=5", "--dtype", "float64"]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    header, *rows = [line.split() for line in out.splitlines()[:4]]
    assert header[:3] == ["step", "loss", "sharpness"] and "top" in header and "mass" in header
    for row in rows:
        _, _, sharpness, top, negative = row
        assert abs(float(top) - float(sharpness)) <= 1e-3 * float(sharpness), row
        assert 0.0 <= float(negative) < 1.0


def test_the_density_top_node_leaves_out_the_padding_of_an_early_stop():
    """A probe whose Lanczos run stopped early is padded with node 0 at weight 0: on a
    negative-definite Hessian the top node is the largest Ritz value, not that 0."""
    family = "hessian_density/"
    records = {
        f"{family}node_0_0": ([0, 5], [-3.0, -2.5]),
        f"{family}node_0_1": ([0, 5], [-1.0, 0.0]),
        f"{family}weight_0_0": ([0, 5], [0.4, 1.0]),
        f"{family}weight_0_1": ([0, 5], [0.6, 0.0]),
    }
    summary = trace_table._density_summary(records)
    assert summary["density top node"] == {0: -1.0, 5: -2.5}
    assert summary["density mass < -0.03 max|node|"] == {0: 1.0, 5: 1.0}
