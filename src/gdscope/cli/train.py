"""Commands on networks directly, outside any study or results directory.

``gdscope train`` trains one network configured by its options and prints its probes (with a
progress bar on a terminal: steps done of the total, the current loss, the final status),
and ``gdscope verify-probes`` checks the fast probes against dense float64 oracles.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from gdscope.cli.app import UserError, check_device, finite_or_none, fmt, stderr, stdout
from gdscope.cli.trace_table import trace_table, unmeasured_line

LOSSES = ("auto", "mse", "cross_entropy", "hinge", "mae", "pseudo_huber")
"""The values of ``TrialConfig.loss``, which checks ``--loss``, for the help (a test keeps them
equal: importing the config here would import torch for every command, ``--help`` included)."""


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options (JSON values, else strings); a key given twice is refused."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what}: expected KEY=VALUE, got {item!r}")
        if key in given:
            raise UserError(
                f"{what}: {key!r} is given twice ({given[key]!r}, then {item!r}); give it once"
            )
        given[key] = item
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def train(
    model: Annotated[str, typer.Option(help="mlp | two_layer | cnn | resnet")] = "mlp",
    width: Annotated[int, typer.Option(help="hidden width (channels for cnn/resnet)")] = 256,
    depth: Annotated[int, typer.Option(help="number of weight layers")] = 3,
    activation: Annotated[
        str, typer.Option(help="relu | tanh | gelu | softplus | identity")
    ] = "relu",
    parameterization: Annotated[
        str, typer.Option(help="standard | ntk | mup | meanfield")
    ] = "standard",
    residual: Annotated[
        bool | None, typer.Option("--residual/--no-residual", help="skip connections")
    ] = None,
    init_scale: Annotated[float, typer.Option(help="multiplies the init std")] = 1.0,
    init: Annotated[str, typer.Option(help="random | identical")] = "random",
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            help="KEY=VALUE for a registered model's function (model.args; repeatable)",
        ),
    ] = None,
    data: Annotated[str, typer.Option(help="dataset name (see gdscope.data.DATASETS)")] = "sphere",
    n: Annotated[
        int | None,
        typer.Option(help="number of training examples [default: 64, or the data set's own]"),
    ] = None,
    d: Annotated[
        int | None,
        typer.Option(help="input dimension (synthetic data) [default: 16, or the data set's own]"),
    ] = None,
    data_option: Annotated[
        list[str] | None, typer.Option(help="extra dataset argument KEY=VALUE (repeatable)")
    ] = None,
    optimizer: Annotated[str, typer.Option(help="gd | sgd | heavy_ball | nesterov | …")] = "gd",
    lr: Annotated[float, typer.Option(help="learning rate")] = 0.1,
    momentum: Annotated[float | None, typer.Option(help="momentum β")] = None,
    l1: Annotated[float, typer.Option(help="L1 strength (prox_gd, fista, subgradient)")] = 0.0,
    loss: Annotated[str, typer.Option(help=" | ".join(LOSSES))] = "auto",
    steps: Annotated[int, typer.Option(help="optimizer updates")] = 100,
    batch_size: Annotated[
        int | None, typer.Option(help="mini-batch size; default full batch")
    ] = None,
    probe: Annotated[
        list[str] | None, typer.Option(help="NAME=EVERY, e.g. grad_norm=10 (repeatable)")
    ] = None,
    stop_loss: Annotated[float | None, typer.Option(help="stop when loss ≤ this")] = None,
    stop_accuracy: Annotated[
        float | None,
        typer.Option(
            help="stop when accuracy ≥ this (probed every step unless --probe accuracy=N)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="seeds model, data and batch order")] = 0,
    dtype: Annotated[str, typer.Option(help="float32 | float64")] = "float32",
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | mps")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print the trace as JSON")] = False,
) -> None:
    """Train one configured network and print its probes and final status.

    On a terminal a progress bar shows the steps done, the current loss and, at the end, the
    status (completed, stopped or diverged); piped or redirected output gets none. Ctrl-C
    prints how many steps were done (nothing is stored: `gdscope train` keeps no results).
    """
    from gdscope.config import TrialConfig
    from gdscope.trials.trial import build_trial

    probes = {"loss": 1, **_key_values(probe or [], "--probe")}
    if stop_accuracy is not None:  # the column shows what the rule reads; mini-batches need it
        probes.setdefault("accuracy", 1)
    raw = {
        "model": {
            "kind": model,
            "width": width,
            "depth": depth,
            "activation": activation,
            "parameterization": parameterization,
            "residual": residual,
            "init_scale": init_scale,
            "init": init,
            **({"args": _key_values(arg, "--arg")} if arg else {}),
        },
        "data": {  # --n/--d left out unless given: a registered loader keeps its own defaults
            "name": data,
            **{key: value for key, value in (("n", n), ("d", d)) if value is not None},
            "options": _key_values(data_option or [], "--data-option"),
        },
        "optimizer": {"name": optimizer, "lr": lr, "momentum": momentum, "l1": l1},
        "loss": loss,
        "steps": steps,
        "batch_size": batch_size,
        "probes": probes,
        "stop": {"loss_below": stop_loss, "accuracy_at_least": stop_accuracy},
        "seed": seed,
        "dtype": dtype,
        "device": device,
    }
    config = _validated(TrialConfig, raw)
    check_device(config.device)
    trace = _run_with_progress(build_trial(config), show=stdout.is_terminal and stderr.is_terminal)
    if as_json:
        stdout.print_json(
            json.dumps(
                finite_or_none(
                    {
                        "config": config.model_dump(mode="json"),
                        "status": trace.status,
                        "steps": trace.steps,
                        "reason": trace.reason,
                        "records": trace.records,
                    }
                ),
                allow_nan=False,  # strict JSON: a nan or inf record is null
            )
        )
        return
    stdout.print(trace_table(trace))
    unmeasured = unmeasured_line(trace, config.probes)
    if unmeasured:
        stdout.print(unmeasured, highlight=False, markup=False, soft_wrap=True)
    colour = {"completed": "green", "stopped": "cyan", "diverged": "red"}[trace.status]
    stdout.print(
        f"status: [{colour}]{trace.status}[/] after {trace.steps} steps ({trace.reason}); "
        f"{trace.wall_time_s:.2f} s"
    )


class StepWatch:
    """Count a trial's optimizer steps and keep its current training loss, as it trains.

    The steps come from the optimizer's post-step hook; the loss is the first loss computed
    with autograd after each step (and before the first): the training step's own loss — the
    full-batch loss in full-batch mode, the mini-batch's in mini-batch mode — never a probe's.
    ``on_step(done, loss)`` is called after each step.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([2.0]))
    >>> opt = torch.optim.SGD([w], lr=0.25)
    >>> watch = StepWatch(opt, lambda out, y: ((out - y) ** 2).mean())
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     watch.loss_fn(w, torch.zeros(1)).backward()
    ...     _ = watch.loss_fn(w.detach(), torch.zeros(1))  # a probe: not the step's loss
    ...     opt.step()
    >>> watch.done, watch.loss  # w: 2 → 1 → 0.5 → 0.25; the third step's loss is 0.5²
    (3, 0.25)
    """

    def __init__(
        self,
        optimizer: Any,
        loss_fn: Callable[[Any, Any], Any],
        on_step: Callable[[int, float | None], object] | None = None,
    ) -> None:
        self.done = 0
        self.loss: float | None = None
        self._armed = True
        self._inner = loss_fn
        self._on_step = on_step
        optimizer.register_step_post_hook(self._stepped)

        def counted(output: Any, target: Any) -> Any:
            return self._counted(output, target)

        # the trial's loss as it was (``__wrapped__``): losses.is_mse still knows mse through it
        self.loss_fn: Callable[[Any, Any], Any] = functools.update_wrapper(counted, loss_fn)

    def _counted(self, output: Any, target: Any) -> Any:
        """Compute the trial's loss; keep the first one with autograd after a step."""
        value = self._inner(output, target)
        if self._armed and getattr(value, "requires_grad", False):
            self._armed = False
            self.loss = float(value.detach())
        return value

    def _stepped(self, *_: Any) -> None:
        self.done += 1
        self._armed = True
        if self._on_step is not None:
            self._on_step(self.done, self.loss)


def _run_with_progress(trial: Any, *, show: bool) -> Any:
    """Run ``trial`` (a :class:`gdscope.trials.trial.Trial`); a progress bar on stderr if ``show``.

    The bar shows steps done / total, the current loss and, once it ends, the status. On
    Ctrl-C: one line with the steps done and the last loss, exit 130.
    """
    from rich import progress as rp

    steps = trial.config.steps
    bar = rp.Progress(
        rp.TextColumn("{task.description}"),
        rp.BarColumn(),
        rp.MofNCompleteColumn(),
        rp.TextColumn("steps  loss {task.fields[loss]}"),
        rp.TimeElapsedColumn(),
        console=stderr,
        disable=not show,
    )
    task = bar.add_task("training", total=steps, loss="…")
    watch = StepWatch(
        trial.optimizer,
        trial.loss_fn,
        lambda done, loss: bar.update(task, completed=done, loss=fmt(loss)),
    )
    trial.loss_fn = watch.loss_fn
    try:  # a Ctrl-C while the bar starts must stop it too (it hides the cursor)
        bar.start()
        trace = trial.run()
    except KeyboardInterrupt:
        bar.stop()
        last = "" if watch.loss is None else f" (last loss {fmt(watch.loss)})"
        stderr.print(
            f"interrupted after {watch.done} of {steps} steps{last}; nothing is stored "
            "(gdscope train keeps no results): run the command again to train from the start",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    except BaseException:
        bar.stop()
        raise
    final = trace.records.get("loss", ([], [None]))[1][-1]
    colour = {"completed": "green", "stopped": "cyan", "diverged": "red"}[trace.status]
    bar.update(
        task,
        completed=trace.steps,
        description=f"[{colour}]{trace.status}[/]",
        loss=fmt(final),
    )
    bar.stop()
    return trace


def verify_probes_command(
    dtype: Annotated[str, typer.Option(help="float64 | float32")] = "float64",
    seed: Annotated[int, typer.Option(help="seed of the random nets and data")] = 0,
) -> None:
    """Check every fast probe against its dense float64 oracle on random nets; print the errors."""
    import torch

    from gdscope.verify_probes import verify_probes

    if dtype not in ("float64", "float32"):
        raise UserError(f"--dtype: expected float64 or float32, got {dtype!r}")
    if seed < 0:
        raise UserError(f"--seed: expected a non-negative integer, got {seed}")
    checks = verify_probes(getattr(torch, dtype), seed=seed)
    table = Table("case", "quantity", "rel. error", "tolerance", "", box=None, header_style="bold")
    for c in checks:
        mark = "[green]ok[/]" if c.ok else "[red]FAIL[/]"
        table.add_row(escape(c.case), c.quantity, f"{c.rel_err:.2e}", f"{c.tolerance:.0e}", mark)
    stdout.print(table)
    failed = [c for c in checks if not c.ok]
    stdout.print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


def _validated(cls: Any, raw: dict[str, Any]) -> Any:
    from gdscope._validation import format_errors

    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        lines = format_errors(err, cls, raw).splitlines()  # a whole-config check names its fields
        raise UserError("; ".join(line.removeprefix("<root>: ") for line in lines)) from None
