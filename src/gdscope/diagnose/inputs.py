"""What ``gdscope diagnose`` refuses before anything trains, each in one line naming the field.

The output paths (:func:`check_results`, :func:`check_html`: a folder on the way that is a
file, a folder where no file can be created, a results store that does not open), the stored
run's name (:func:`check_run`), the learning rate (:func:`check_lr`), real-valued targets
under a classification loss (:func:`check_targets`), and a network with nothing to train (:func:`refuse_untrained`; one with no trainable parameter at all is
:func:`~gdscope.trials.trial.build_trial`'s to refuse). The path checks create
nothing: the folder's writability is tried with a temporary file, removed at once.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from gdscope import _output
from gdscope.config import TrialConfig
from gdscope.store import Store
from gdscope.trials.trial import model_label

__all__ = [
    "TargetsError",
    "check_html",
    "check_lr",
    "check_results",
    "check_run",
    "check_targets",
    "refuse_untrained",
    "trainable_count",
]


def check_lr(lr: object, option: str = "lr") -> None:
    """Refuse a learning rate that is not a finite number greater than 0.

    >>> check_lr(-1.0, "--lr")
    Traceback (most recent call last):
    ...
    ValueError: --lr: diagnose needs a finite number greater than 0, got -1.0; e.g. --lr 0.1
    """
    if (
        isinstance(lr, bool)
        or not isinstance(lr, int | float)
        or not (math.isfinite(lr) and lr > 0)
    ):
        studies = " (the tunings 'auto_kernel' and 'auto_sharpness' are for studies)"
        tuning = studies if isinstance(lr, str) and lr.startswith("auto_") else ""
        raise ValueError(
            f"{option}: diagnose needs a finite number greater than 0, got {lr!r}{tuning}; "
            f"e.g. {_give(option, '0.1')}"
        )


def check_run(
    run: str | None, results: object, names: tuple[str, str] = ("run", "results")
) -> None:
    """Refuse an empty run name, and a run name without a results directory to store it in.

    >>> check_run("mine", None, ("--run", "--results"))
    Traceback (most recent call last):
    ...
    ValueError: --run=mine: names the stored run, but nothing is stored without --results; add --results DIR, or leave --run out
    """
    run_option, results_option = names
    if run is None:
        return
    if not run.strip():
        raise ValueError(
            f"{run_option}: the run name is empty; give a name, or leave {run_option} out for "
            "'diagnose-<function>'"
        )
    if results is None:
        raise ValueError(
            f"{run_option}={run}: names the stored run, but nothing is stored without "
            f"{results_option}; add {_give(results_option, 'DIR')}, or leave {run_option} out"
        )


def _give(option: str, value: str) -> str:
    """``--lr 0.1`` for a command-line option, ``lr=0.1`` for a keyword argument."""
    return f"{option} {value}" if option.startswith("--") else f"{option}={value}"


def check_results(path: str | os.PathLike[str], option: str = "results") -> Path:
    """Refuse a results directory the run could not be stored in (before it trains)."""
    target = Path(path)
    if not str(path).strip():
        raise ValueError(f"{option}: the results directory is empty; give a folder, e.g. runs")
    if target.exists() and not target.is_dir():
        raise ValueError(f"{option}={path} is a file; give a results directory")
    _check_folder(target, path, option)
    store = target / _output.STORE_FILE
    if store.exists() or store.is_symlink():
        Store(target, read_only=True)  # a damaged or newer store: refused now, not after the run
    return target


def check_html(path: str | os.PathLike[str], option: str = "--html") -> Path:
    """Refuse a page path that could not be written (before the run trains)."""
    target = _output.check_target(path, option)
    _check_folder(target.parent, path, option)
    return target


def _check_folder(folder: Path, path: str | os.PathLike[str], option: str) -> None:
    """Refuse ``path`` unless the nearest existing folder on the way to ``folder`` takes files."""
    nearest = folder
    for nearest in (folder, *folder.parents):
        if nearest.is_dir():
            break
        if nearest.exists() or nearest.is_symlink():
            what = "a file" if nearest.exists() else "a broken link"
            raise ValueError(
                f"{option}={path}: {nearest} is {what}, not a folder; give a path in a folder"
            )
    try:
        handle, trial = tempfile.mkstemp(dir=nearest, prefix=".gdscope-check-")
    except OSError as err:
        raise ValueError(
            f"{option}={path}: cannot create files in {nearest} ({err.strerror or err}); give "
            "a path in a folder you can write"
        ) from None
    os.close(handle)
    os.unlink(trial)


CLASSIFICATION_LOSSES = ("cross_entropy", "hinge")
"""Losses of class labels (integers) or binary float targets (±1 or {0, 1}), nothing else."""


class TargetsError(ValueError):
    """Targets the chosen loss cannot take; :meth:`message` names the option that chose it."""

    def __init__(self, loss: str, shown: str) -> None:
        self.loss, self.shown = loss, shown
        super().__init__(self.message("loss"))

    def message(self, option: str) -> str:
        """Return the error in one line, naming the loss as ``option`` (``--loss`` on the CLI)."""
        return (
            f"{_give(option, self.loss)}: {self.loss} takes class labels (integers) or binary "
            f"targets (±1 or {{0, 1}}), but the data's targets are real-valued ({self.shown}); "
            f"for real-valued targets use {_give(option, 'mse')} (or mae, pseudo_huber)"
        )


def check_targets(loss: str, y: Tensor) -> None:
    """Refuse real-valued targets under a classification loss, before anything trains.

    >>> check_targets("hinge", torch.tensor([0.5, -1.0]))
    Traceback (most recent call last):
    ...
    gdscope.diagnose.inputs.TargetsError: loss=hinge: hinge takes class labels (integers) or \
binary targets (±1 or {0, 1}), but the data's targets are real-valued (2 distinct values, e.g. \
-1, 0.5); for real-valued targets use loss=mse (or mae, pseudo_huber)
    """
    if loss not in CLASSIFICATION_LOSSES or not y.is_floating_point():
        return
    values = torch.unique(y.detach())
    for binary in ((-1.0, 1.0), (0.0, 1.0)):
        if bool(torch.isin(values, values.new_tensor(binary)).all()):
            return
    examples = ", ".join(f"{v:.5g}" for v in values[:3].tolist())
    raise TargetsError(loss, f"{values.numel()} distinct values, e.g. {examples}")


def refuse_untrained(
    model: torch.nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch: tuple[Tensor, Tensor],
    config: TrialConfig,
) -> None:
    """Refuse, in one line, a network whose loss does not depend on any trainable parameter.

    One forward and backward on ``batch``; a buffer the forward moves (a spectral norm's power
    iteration in training mode) is put back, so the diagnosis measures what it did before.
    """
    weights = [q for q in model.parameters() if q.requires_grad]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    with torch.enable_grad():
        loss = loss_fn(model(batch[0]), batch[1])
        used = loss.requires_grad and any(
            g is not None for g in torch.autograd.grad(loss, weights, allow_unused=True)
        )
    with torch.no_grad():
        for buffer, saved in buffers:
            if not torch.equal(buffer, saved):
                buffer.copy_(saved)
    if not used:
        raise ValueError(
            f"{model_label(config)}: the network's output does not depend on its trainable "
            "parameters (its forward uses none of them, or detaches them), so there is no "
            "curvature or kernel to measure; return a model whose output is computed from "
            "its parameters"
        )


def trainable_count(model: torch.nn.Module) -> int:
    """Return the number of trainable (``requires_grad``) parameter entries of ``model``."""
    return sum(q.numel() for q in model.parameters() if q.requires_grad)
