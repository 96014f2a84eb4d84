"""A PyTorch Lightning callback that monitors ``Trainer.fit`` with gdscope's scheduled probes.

``GdscopeMonitor`` wraps :func:`gdscope.integrations.monitor`: at the start of training it
measures step 0 (the model before any update); after each optimizer step (``on_train_batch_end``
with a new ``trainer.global_step``, so gradient accumulation measures once per update) it calls
``mon.step(global_step, lr=...)`` with the learning rate of the first parameter group of the first
optimizer; at the end it closes the run (``completed`` or ``diverged``), and on an exception it
records it (``failed``, or ``interrupted`` for Ctrl-C). Only the process of global rank 0
measures and writes. The probe set gets the trainer's input conversion (``precision="64-true"``
or ``"bf16-true"``: the module's dtype), and the first optimizer reaches the probes that read
one (``preconditioned_sharpness``). Lightning's ``global_step`` counts optimizer steps: with
two optimizers stepped per batch (manual optimization) the steps advance by two. A run resumed
from a checkpoint starts its series at the checkpoint's step, and its baselines
(``dist_from_init``, ``ntk_drift``, …) are that step's weights (it warns). Needs the
``lightning`` extra (``pip install 'gdscope[lightning]'``): without it this module still
imports and ``GdscopeMonitor(...)`` raises ``ImportError`` saying so; ``import gdscope`` never
imports Lightning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from gdscope.integrations import monitor
from gdscope.training.loop import validate_schedule
from gdscope.training.monitor import Monitor
from gdscope.training.probe_set import check_probe_batch

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import Callback
else:
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError:  # the extra is not installed: this module imports, the callback refuses

        class Callback:
            def __init__(self) -> None:
                raise ImportError(
                    "GdscopeMonitor needs PyTorch Lightning: pip install 'gdscope[lightning]'"
                )


__all__ = ["GdscopeMonitor"]


class GdscopeMonitor(Callback):
    """Record a Lightning training run with gdscope's probes into a results store.

    Args:
        loss_fn: ``loss_fn(pl_module(x), y) -> scalar`` on the probe set.
        probe_batch: an ``(x, y)`` pair of tensors or a ``DataLoader`` (its first
            ``probe_size`` examples), moved to the module's device when training starts.
        probes: ``{probe name: every k optimizer steps}``; default ``{"loss": 1}``.
        results: the results directory; ``None`` keeps the run in ``callback.monitor.trace``.
        run: the run's name (default: the LightningModule's class name).
        probe_size: examples drawn from a ``DataLoader`` probe set.
        eval_batch: held-out data for the ``"test"`` probe.

    Raises:
        ValueError: an unknown probe, a bad schedule, or a ``probe_batch`` of the wrong type,
            at construction (before ``fit``).

    """

    def __init__(
        self,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        probe_batch: Any,
        *,
        probes: Mapping[str, int] | None = None,
        results: str | os.PathLike[str] | None = "gdscope-results",
        run: str | None = None,
        probe_size: int = 256,
        eval_batch: Any = None,
    ) -> None:
        super().__init__()
        validate_schedule(probes, loss_fn=loss_fn)
        check_probe_batch(probe_batch)  # a DataLoader is drawn when training starts
        self.options: dict[str, Any] = {
            "probes": probes,
            "results": results,
            "run": run,
            "probe_size": probe_size,
            "eval_batch": eval_batch,
        }
        self.loss_fn, self.probe_batch = loss_fn, probe_batch
        self.monitor: Monitor | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the run and measure step 0 (rank 0 only)."""
        if trainer.global_rank != 0:
            return
        if trainer.global_step > 0:
            warnings.warn(
                f"GdscopeMonitor: training resumes at step {trainer.global_step}; this run's "
                "series start there and its baselines (dist_from_init, ntk_drift, ...) are that "
                "step's weights, not the first run's initialization",
                stacklevel=2,
            )
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        mon = monitor(
            pl_module, self.loss_fn, self.probe_batch, optimizer=optimizer, **self.options
        )
        convert = trainer.precision_plugin.convert_input  # as the trainer converts its inputs
        mon.data = _pair(convert(mon.data))
        mon.eval_data = None if mon.eval_data is None else _pair(convert(mon.eval_data))
        self.monitor = mon
        self.monitor.__enter__()
        self.monitor.step(trainer.global_step, lr=_lr(trainer))

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Record the step after each optimizer update (once per ``global_step``)."""
        mon = self.monitor
        if mon is None or mon.status != "running":
            return
        if mon.last_step is not None and trainer.global_step <= mon.last_step:
            return  # gradient accumulation: no update since the last call
        mon.step(trainer.global_step, lr=_lr(trainer))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Close the run: final probes, status ``completed`` or ``diverged``."""
        if self.monitor is not None:
            self.monitor.close()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Record the exception that ended training (``failed`` / ``interrupted``)."""
        if self.monitor is not None:
            self.monitor.close(exception)


def _pair(batch: Any) -> tuple[Tensor, Tensor]:
    x, y = batch
    return x, y


def _lr(trainer: Trainer) -> float | None:
    optimizers = trainer.optimizers
    if not optimizers or not optimizers[0].param_groups:
        return None
    return float(optimizers[0].param_groups[0]["lr"])
