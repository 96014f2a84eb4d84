"""Runner objects: one method, ``map(trials, on_result, progress)``, the shape of a Hydra launcher.

A runner takes ``(hash, config)`` pairs, trains each trial (:func:`gdscope.trials.trial.run_config`)
and hands every outcome (the ``Trace``, or a ``TrialError``) to ``on_result`` in the calling
process, which stays the only writer to the store. What differs between runners is only where
the trials run:

* :class:`LocalRunner` — in this process (``workers=1``) or in a pool of spawned worker
  processes kept alive across ``map`` calls until :meth:`~LocalRunner.close`;
* :class:`RayRunner` — Ray tasks on a local instance or a cluster (:mod:`gdscope.runners.ray`).

Both may train trials that differ only in seed, learning rate or init scale together as one
ensemble (``batch``; the stored bits are the same as one by one): :func:`ensemble_jobs` groups
them. :func:`make_runner` builds a runner from the CLI's flags.

Example:
    >>> with LocalRunner(workers=1) as runner:
    ...     runner.map([], on_result=print)
    >>> make_runner("local", workers=2)
    LocalRunner(workers=2, batch=None)

"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from gdscope import _checks as check
from gdscope.runners._jobs import Config, OnResult, RunGroup, device_of, uses_cuda

__all__ = ["RUNNERS", "LocalRunner", "RayRunner", "Runner", "ensemble_jobs", "make_runner"]

RUNNERS = ("local", "ray")
Progress = Callable[[int, int], None]


class Runner(abc.ABC):
    """Map trial configs to outcomes; subclasses say where the trials run.

    Attributes:
        workers: how many trials run at once (the number of parts an ensemble is split into).
        batch: ``True`` trains same-shaped trials together as ensembles, ``False`` never,
            ``None`` (auto) only trials on a CUDA device.

    """

    workers: int = 1
    batch: bool | None = None

    def map(
        self,
        trials: Sequence[tuple[str, Config]],
        *,
        on_result: OnResult,
        progress: Progress | None = None,
    ) -> None:
        """Train every trial; report each outcome to ``on_result(hash, config, outcome)``.

        Same-shaped trials go as one ensemble job where ``batch`` says so (:func:`ensemble_jobs`).
        """
        groups, run_group = ensemble_jobs(trials, self.workers, self.batch)
        self._run(trials, groups, run_group, on_result, progress)

    @abc.abstractmethod
    def _run(
        self,
        trials: Sequence[tuple[str, Config]],
        groups: list[list[int]] | None,
        run_group: RunGroup | None,
        on_result: OnResult,
        progress: Progress | None,
    ) -> None:
        """Run the jobs (``groups`` of trial indices; ``None``: one trial a job) here."""

    def check_devices(self, configs: Sequence[Config]) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` if these trials cannot run here (default: anything can)."""

    def connect(self) -> bool:
        """Reach where the trials run, before anything is written (default: nothing to reach).

        Returns whether this call connected (then :meth:`close` disconnects).

        Raises:
            ValueError: it cannot be reached (e.g. :class:`gdscope.runners.ray.AddressError`).

        """
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the runner holds (worker processes); it may be used again after."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers}, batch={self.batch})"


class LocalRunner(Runner):
    """Run trials on this machine: in this process, or in ``workers`` spawned processes.

    The worker processes start at the first ``map`` that needs them and are kept for the next
    ones (starting one costs an interpreter and a torch import) until :meth:`close`. Every trial
    runs on one torch thread, so its results do not depend on ``workers``.
    """

    def __init__(self, workers: int = 1, *, batch: bool | None = None) -> None:
        self.workers = check.positive_int("workers", workers)
        self.batch = batch
        self._pool: Any = None

    def _run(
        self,
        trials: Sequence[tuple[str, Config]],
        groups: list[list[int]] | None,
        run_group: RunGroup | None,
        on_result: OnResult,
        progress: Progress | None,
    ) -> None:
        from gdscope.runners.local import WorkerPool, run_trials
        from gdscope.trials.trial import run_config

        if self._pool is None and self.workers > 1 and len(groups or trials) > 1:
            self._pool = WorkerPool(self.workers)
        run_trials(
            trials,
            run_config,
            workers=self.workers,
            on_result=on_result,
            progress=progress,
            groups=groups,
            run_group=run_group,
            pool=self._pool,
        )

    def check_devices(self, configs: Sequence[Config]) -> None:
        """Refuse CUDA or MPS trials where torch sees no such device (the fix in the message)."""
        import torch

        mps = any(device_of(c).startswith("mps") for c in configs)
        if mps and not torch.backends.mps.is_available():
            raise ValueError(
                "the trials ask for device 'mps' but torch sees no MPS device on this "
                'machine; use --set base.device="cpu"'
            )
        if not uses_cuda(configs):
            return

        if not torch.cuda.is_available():
            raise ValueError(
                "the trials ask for device 'cuda' but torch sees no GPU on this machine "
                "(torch.cuda.is_available() is False); run them where there is one, or "
                'use --set base.device="cpu"'
            )

    def close(self) -> None:
        """Stop the worker processes (the next ``map`` starts new ones)."""
        if self._pool is not None:
            self._pool.__exit__(None, None, None)
            self._pool = None


class RayRunner(Runner):
    """Run each trial as a Ray task (retried if its worker dies); see :mod:`gdscope.runners.ray`.

    ``address=None`` starts a private local Ray instance for each ``map``; ``"auto"`` or
    ``"ray://HOST:10001"`` joins a cluster: at :meth:`connect` (``run_study`` calls it before
    writing anything; an unreachable cluster is an ``AddressError``) until :meth:`close`, else
    for each ``map``. ``workers`` only sets how many parts an ensemble is split into (one task
    each). The cluster's GPUs, not this machine's, decide CUDA trials.
    """

    def __init__(
        self, address: str | None = None, *, workers: int = 1, batch: bool | None = None
    ) -> None:
        self.address = address
        self.workers = check.positive_int("workers", workers)
        self.batch = batch
        self._joined = False

    def connect(self) -> bool:
        """Check that Ray is installed and join the cluster at ``address`` (kept until ``close``).

        Returns whether this call joined it.

        Raises:
            ImportError: Ray is not installed.
            AddressError: the cluster cannot be reached (a one-line error with the fix).

        """
        from gdscope.runners.ray import join

        joined = join(self.address)
        self._joined = joined or self._joined
        return joined

    def close(self) -> None:
        """Leave the cluster joined by :meth:`connect` (the next ``map`` joins it again)."""
        if self._joined:
            from gdscope.runners.ray import leave

            leave()
            self._joined = False

    def _run(
        self,
        trials: Sequence[tuple[str, Config]],
        groups: list[list[int]] | None,
        run_group: RunGroup | None,
        on_result: OnResult,
        progress: Progress | None,
    ) -> None:
        from gdscope.runners.ray import run_trials
        from gdscope.trials.trial import run_config

        run_trials(
            trials,
            run_config,
            address=self.address,
            on_result=on_result,
            progress=progress,
            groups=groups,
            run_group=run_group,
        )

    def __repr__(self) -> str:
        return f"RayRunner(address={self.address!r}, workers={self.workers}, batch={self.batch})"


def make_runner(
    name: str = "local", *, workers: int = 1, address: str | None = None, batch: bool | None = None
) -> Runner:
    """Build the runner the CLI's ``--runner/--workers/--address/--batch`` flags name.

    Raises:
        ValueError: an unknown runner (did-you-mean), ``workers`` not a positive integer, or an
            ``address`` without ``name="ray"``.

    """
    check.one_of("runner", name, RUNNERS)
    workers = check.positive_int("workers", workers)
    if name == "ray":
        return RayRunner(address, workers=workers, batch=batch)
    if address is not None:
        raise ValueError(f"address={address!r} is for runner='ray', not runner={name!r}")
    return LocalRunner(workers, batch=batch)


def ensemble_jobs(
    trials: Sequence[tuple[str, Config]], workers: int, batch: bool | None
) -> tuple[list[list[int]] | None, RunGroup | None]:
    """Group ``trials`` into ensembles, each split so that every worker gets a share.

    Returns ``(groups, run_group)`` for :func:`gdscope.runners.local.run_trials`, or
    ``(None, None)`` for one trial a job (``batch=False``; or ``batch=None`` with no CUDA
    trial). With ``batch=None`` only the groups on a CUDA device stay together.
    """
    if batch is False or (batch is None and not uses_cuda([config for _, config in trials])):
        return None, None
    from gdscope.ensemble import group_trials, run_trial_group

    share = max(1, -(-len(trials) // workers))
    groups = group_trials([config for _, config in trials], max_size=share)
    if batch is None:
        groups = [
            part
            for group in groups
            for part in ([group] if uses_cuda([trials[group[0]][1]]) else [[i] for i in group])
        ]
    return groups, run_trial_group
