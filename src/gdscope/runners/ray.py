"""Run trials as Ray tasks: on a local Ray instance or on an existing cluster.

``run_trials(trials, run_one, address=..., on_result=...)`` has the contract of
:func:`gdscope.runners.local.run_trials`: every outcome (the ``Trace``, or a ``TrialError`` with
the remote traceback) reaches ``on_result`` in the calling process, in completion order, and the
caller stays the only writer to the store. Ray is imported here only.

Each trial is one task with ``num_cpus=1`` that limits torch to one thread (as the local pool
does, so both runners give bitwise-equal results). A task whose worker process dies (killed,
out of memory, node lost) is retried up to ``max_retries`` times by Ray (Moritz et al., 2018,
*Ray: A Distributed Framework for Emerging AI Applications*, OSDI, §4.2.3 lineage-based
recovery); an exception raised *by the trial* is not retried — it is a result, stored as a failed
trial. A task that still fails after its retries is reported as a ``TrialError``.

Cluster: with ``address=None`` a private local Ray instance is started (``ray.init``) and shut
down at the end, and a watchdog (:mod:`gdscope.runners._ray_reaper`) ends all its processes —
the raylet's agents and busy workers too — as soon as this process is gone, even killed by
``SIGKILL`` (Ray alone leaves them running for about a minute); ``address="auto"`` joins the
cluster this machine is a node of (started with ``ray start --head`` /
``ray start --address HEAD:6379``); ``address="ray://HEAD:10001"`` connects
through Ray Client. Every node needs the same gdscope and torch installed (or pass a
``runtime_env``). Ray already initialized by the caller is used as it is and left running.

User code reaches the workers as in the local pool: every task gets the probes, models and data
sets registered in this process (``gs.register_probe`` / ``register_model`` /
``register_dataset``; one object put once, installed by the task), and a ``"custom"`` factory
travels in the trial config as its file path and digest, loaded by path in the worker — so a
module beside the study file need not be importable there (on a cluster the path must exist
on every node, e.g. a shared file system).

A cluster that cannot be reached is an :class:`AddressError` (a ``ValueError``, one line with the
fix) as soon as Ray says so; an address where nothing listens is refused at once (a TCP
connection is tried first), where Ray itself would retry for minutes. :func:`join` connects
before a run writes anything (``RayRunner.connect``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdscope.runners._jobs import (
    Reporter,
    RunGroup,
    TrialError,
    UserCode,
    device_of,
    init_worker,
    install_user_code,
    partition_jobs,
    refuse_while_importing_main,
    run_job,
    user_code,
    uses_cuda,
)

if TYPE_CHECKING:
    from gdscope.training import Trace

__all__ = ["AddressError", "join", "leave", "run_trials"]

Config = Mapping[str, Any]
RunOne = Callable[[Any], "Trace"]
OnResult = Callable[[str, Any, "Trace | BaseException"], None]
CONNECT_TIMEOUT_S = 5.0
"""How long the TCP check of a cluster address waits for an answer."""


class AddressError(ValueError):
    """The Ray cluster at ``address`` cannot be reached; ``reason`` says what Ray (or TCP) said.

    ``str(error)`` names the Python argument (``address='auto': ...``);
    ``error.message(cli=True)`` the command line's ``--address``.
    """

    def __init__(self, address: str, reason: str) -> None:
        self.address, self.reason = address, reason
        super().__init__(self.message())

    def message(self, *, cli: bool = False) -> str:
        """Return the one-line error, naming ``--address`` (``cli``) or ``address=``."""
        given = f"--address={self.address}" if cli else f"address={self.address!r}"
        local = "leave out --address" if cli else "pass address=None"
        return (
            f"{given}: cannot connect to a Ray cluster ({self.reason}); start one with "
            f"`ray start --head` (then use auto, or ray://HEAD:10001 from another machine), "
            f"or {local} to run on a local Ray instance"
        )


def join(address: str | None) -> bool:
    """Check that Ray is installed; join the cluster at ``address`` unless Ray is running here.

    ``None`` (or ``"local"``: a local instance, started by :func:`run_trials`) joins nothing.
    Returns whether this call connected (then :func:`leave` disconnects).

    Raises:
        ImportError: Ray is not installed.
        AddressError: the cluster cannot be reached.

    """
    ray = _import_ray()
    if address in (None, "local") or ray.is_initialized():
        return False
    _init(ray, address)
    return True


def leave() -> None:
    """Disconnect from the cluster joined by :func:`join`."""
    _import_ray().shutdown()


def run_trials(
    trials: Sequence[tuple[str, Config]],
    run_one: RunOne,
    *,
    on_result: OnResult,
    address: str | None = None,
    max_retries: int = 3,
    num_cpus: int | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    groups: Sequence[Sequence[int]] | None = None,
    run_group: RunGroup | None = None,
) -> None:
    """Run every job as a Ray task and report each trial's outcome to ``on_result`` as it ends.

    Args:
        trials: ``(hash, config)`` pairs; ``config`` is what ``run_one`` takes.
        run_one: ``run_one(config) -> Trace``; shipped to the workers by Ray's cloudpickle (a
            module-level function of an installed package is sent by reference).
        on_result: ``on_result(hash, config, outcome)``, called in this process only.
        address: ``None`` starts a local Ray instance; ``"auto"`` or ``"ray://host:port"``
            joins an existing cluster.
        max_retries: retries of a task whose worker died (not of a trial that raised).
        num_cpus: CPUs of a locally started instance (default: all of this machine's).
        runtime_env: Ray runtime environment for a started instance (e.g. ``{"pip": [...]}``).
        progress: optional ``progress(done, total)``, as for the local runner.
        groups: a partition of the trial indices into jobs, as for the local runner.
        run_group: ``run_group(configs) -> outcomes`` for jobs of two or more trials.

    A job whose trials run on CUDA (``device`` starting with ``"cuda"``) asks Ray for
    one GPU, so the cluster schedules it on a GPU node; a cluster with no GPU at all is refused
    before anything runs (Ray would wait for one forever).

    Raises:
        ImportError: Ray is not installed (``pip install 'gdscope[ray]'``).
        AddressError: the cluster at ``address`` cannot be reached.
        ValueError: ``max_retries`` is negative, or ``groups`` is not a partition.
        StudyError: a trial asks for a CUDA device and the Ray cluster has no GPU.
        KeyboardInterrupt: interrupted; the remaining tasks are cancelled.

    """
    refuse_while_importing_main("run_trials")
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
    ray = _import_ray()
    report = Reporter(trials, on_result, progress)
    if not trials:
        return
    started_here = not ray.is_initialized()
    reaper, context = None, None
    if started_here:
        context = _init(ray, address, num_cpus, runtime_env)
    try:
        if context is not None and address is None:
            reaper = _start_reaper(context)
        jobs = partition_jobs(len(trials), groups)
        _check_gpus(ray, [config for _, config in trials], address)
        task = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_ray_job)
        code = ray.put(user_code())  # put once; each task installs it
        pending = {}
        for job in jobs:
            configs = [trials[i][1] for i in job]
            gpus = 1 if uses_cuda(configs) else 0
            ref = task.options(num_gpus=gpus).remote(run_one, run_group, configs, code)
            pending[ref] = job
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job = pending.pop(ref)
                    report(job, _outcomes(ray, ref, len(job)))
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    finally:
        try:
            if started_here:
                ray.shutdown()
        finally:
            if reaper is not None:
                _stop_reaper(reaper)


def _init(
    ray: Any,
    address: str | None,
    num_cpus: int | None = None,
    runtime_env: Mapping[str, Any] | None = None,
) -> Any:
    """``ray.init`` quietly; a cluster it cannot reach is an :class:`AddressError`."""
    cluster = address not in (None, "local")
    if cluster:
        _check_listening(ray, str(address))
    try:
        return ray.init(
            address=address,
            num_cpus=num_cpus,
            runtime_env=dict(runtime_env) if runtime_env is not None else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except Exception as error:
        if not cluster:
            raise
        raise AddressError(str(address), _first_line(error)) from None


def _check_listening(ray: Any, address: str) -> None:
    """Refuse at once a cluster address where nothing listens (Ray would retry for minutes).

    ``"auto"`` and ``HOST:PORT`` are resolved as ``ray.init`` resolves them (``"auto"``: the
    cluster this machine runs, else an error); ``ray://HOST:PORT`` is Ray Client's server. An
    address this cannot parse is left to ``ray.init``.
    """
    target = address.removeprefix("ray://")
    if target == address:
        try:
            services = importlib.import_module("ray._private.services")
            target = services.canonicalize_bootstrap_address(address) or ""
        except ConnectionError as error:  # "auto" with no cluster running here
            raise AddressError(address, _first_line(error)) from None
        except Exception:  # another Ray: ray.init says what is wrong
            return
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit():
        return
    host = host.strip("[]")  # an IPv6 address
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        said = error.strerror or str(error) or type(error).__name__
        raise AddressError(address, f"nothing answers at {host}:{port}: {said}") from None


def _first_line(error: BaseException) -> str:
    """Return the first line of ``error``'s message (Ray's run over several), else its type."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _start_reaper(context: Any) -> subprocess.Popen[bytes] | None:
    """Start the watchdog that ends the local instance's processes once this process is gone.

    Only for an instance this process started (its GCS server and raylet are children of this
    process: ``ray.init()`` without an address may join a running cluster, which is left
    alone), on Linux (the watchdog reads ``/proc``). Returns ``None`` where it does not apply.
    """
    from gdscope.runners import _ray_reaper

    session_dir = getattr(context, "address_info", {}).get("session_dir")
    if not session_dir or not Path("/proc/self/fd").is_dir():
        return None
    if not _ray_reaper.children_holding(session_dir, os.getpid()):
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-I", _ray_reaper.__file__, session_dir, str(os.getpid())],
            stdin=subprocess.PIPE,  # its only writer is this process: end of file = it is gone
            start_new_session=True,  # a Ctrl-C or a kill of this process group misses it
        )
    except OSError:  # no watchdog: Ray's own clean-up, about a minute after a kill
        return None


def _stop_reaper(reaper: subprocess.Popen[bytes]) -> None:
    """Close the watchdog's pipe (it ends what ``ray.shutdown`` left) and wait for it."""
    with contextlib.suppress(OSError):
        if reaper.stdin is not None:
            reaper.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        reaper.wait(timeout=10)


def _check_gpus(ray: Any, configs: Sequence[Config], address: str | None) -> None:
    """Refuse CUDA trials on a cluster without a GPU: Ray would wait for one forever.

    Raises:
        StudyError: a config's ``device`` is CUDA and the cluster has no GPU.

    """
    cuda = [device_of(c) for c in configs if uses_cuda([c])]
    if not cuda or ray.cluster_resources().get("GPU", 0) > 0:
        return
    from gdscope.studies import StudyError

    where = address
    if where is None:
        try:
            where = ray.get_runtime_context().gcs_address
        except Exception:  # an old Ray, or Ray Client
            where = "(local)"
    raise StudyError(
        f"the trials ask for device {cuda[0]!r} but the Ray cluster at {where} has no GPU; "
        "run them on a machine with one or set device='cpu'"
    )


def _ray_job(
    run_one: RunOne,
    run_group: RunGroup | None,
    configs: list[Any],
    code: UserCode | None = None,
) -> list[Any]:
    """Run one job in a Ray worker on one torch thread; raised errors come back as data.

    ``code``: the driver's registered probes and models / data sets
    (:func:`~gdscope.runners._jobs.user_code`), installed first as a pool worker installs them
    (a reused worker skips a snapshot it already holds).
    """
    init_worker()
    if code is not None:
        install_user_code(code)
    return run_job(run_one, run_group, configs)


def _outcomes(ray: Any, ref: Any, size: int) -> list[Any]:
    """Return a job's outcomes; a job lost after its retries (worker died) as TrialErrors."""
    try:
        return ray.get(ref)
    except Exception as error:
        return [TrialError.from_exception(error)] * size


def _import_ray() -> Any:
    try:
        import ray  # pyright: ignore[reportMissingImports]
    except ImportError as err:
        raise ImportError(
            "the ray runner needs Ray, which is not installed; `pip install 'gdscope[ray]'`"
        ) from err
    return ray
