"""``gdscope diagnose``: which regime a network trains in, and what the theories predict for it.

A thin layer over :func:`gdscope.diagnose.diagnose`: the options become a network trial of kind
``custom`` (checked, and its model and data built, before anything is written), the summary and
the theory checks are printed as tables, ``--json`` prints strict JSON instead, ``--html`` writes
one self-contained page and ``--results`` stores the run's series as a monitored run. Both output
paths, ``--run`` and ``--lr`` are checked before anything trains. Ctrl-C prints one line saying
where the run stopped and, with ``--results``, stores what was measured as an ``interrupted`` run
(exit 130).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gdscope.cli.app import UserError, check_device, stderr, stdout
from gdscope.cli.train import LOSSES, _key_values, _validated


def diagnose(
    model: Annotated[
        str,
        typer.Argument(
            help="model factory 'module:function' (an nn.Module), a built-in kind (mlp, "
            "two_layer, cnn, resnet; options by --arg) or a registered one (gdscope --import MODULE)"
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            help="data factory 'module:function' returning (x, y), or a registered data set"
        ),
    ],
    lr: Annotated[float, typer.Option(help="learning rate")],
    optimizer: Annotated[str, typer.Option(help="gd | sgd | heavy_ball | nesterov | …")] = "gd",
    steps: Annotated[int, typer.Option(help="optimizer updates of the run")] = 200,
    momentum: Annotated[float | None, typer.Option(help="momentum β")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="mini-batch size; default full batch")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            help="model argument KEY=VALUE (repeatable): a factory's keyword, or a built-in "
            "kind's option (width=64, depth=2, activation=tanh, parameterization=ntk)"
        ),
    ] = None,
    data_arg: Annotated[
        list[str] | None, typer.Option(help="data factory argument KEY=VALUE (repeatable)")
    ] = None,
    loss: Annotated[str, typer.Option(help=" | ".join(LOSSES))] = "auto",
    probe_size: Annotated[int, typer.Option(help="examples of the NTK probe set")] = 64,
    hessian_size: Annotated[int, typer.Option(help="examples of the Hessian probe set")] = 256,
    every: Annotated[
        int | None, typer.Option(help="steps between sharpness checkpoints; default steps/20")
    ] = None,
    seed: Annotated[int, typer.Option(help="seeds model, data, batch order, probe sets")] = 0,
    dtype: Annotated[str, typer.Option(help="float32 | float64")] = "float32",
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
    results: Annotated[
        Path | None, typer.Option(help="store the run's series in this results directory")
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(help="the stored run's name (with --results; default `diagnose-<function>`)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the diagnosis as JSON")] = False,
    html: Annotated[Path | None, typer.Option(help="write the diagnosis as an HTML page")] = None,
) -> None:
    """Measure a network at init and along a short run: its regime and what theory predicts."""
    from gdscope.config import TrialConfig
    from gdscope.diagnose import inputs, network_parts, render
    from gdscope.diagnose.inputs import TargetsError
    from gdscope.diagnose.run import diagnose_checked

    for name, size in (("--probe-size", probe_size), ("--hessian-size", hessian_size)):
        if size < 1:
            raise UserError(f"{name}: expected a positive integer, got {size}")
    if every is not None and every < 1:
        raise UserError(f"--every: expected a positive integer, got {every}")
    try:  # every output is checked before anything trains
        inputs.check_lr(lr, "--lr")
        inputs.check_run(run, results, ("--run", "--results"))
        if html is not None:
            inputs.check_html(html, "--html")
        if results is not None:
            inputs.check_results(results, "--results")
    except ValueError as err:
        raise UserError(str(err)) from None
    model_args, data_args = (
        _key_values(arg or [], "--arg"),
        _key_values(data_arg or [], "--data-arg"),
    )
    try:
        parts = network_parts(model, data, model_args, data_args)
    except ValueError as err:
        raise UserError(str(err)) from None
    raw = {
        **parts,
        "optimizer": {"name": optimizer, "lr": lr, "momentum": momentum},
        "loss": loss,
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "dtype": dtype,
        "device": device,
    }
    config = _validated(TrialConfig, raw)
    check_device(config.device)
    try:
        diagnosis = diagnose_checked(
            config,
            ntk_examples=probe_size,
            hessian_examples=hessian_size,
            every=every,
            results=results,
            run=run,
        )
    except TargetsError as err:  # names --loss, not the Python argument
        raise UserError(err.message("--loss")) from None
    except KeyboardInterrupt as stop:
        _say_interrupted(stop, results)
        raise typer.Exit(130) from None
    if html is not None:
        render.write_html(diagnosis, html)
    if as_json:
        typer.echo(render.to_json(diagnosis))
        return
    stdout.print(render.summary_table(diagnosis))
    stdout.print(render.checks_table(diagnosis))
    if html is not None:
        stdout.print(f"wrote {html}")


def _say_interrupted(stop: KeyboardInterrupt, results: Path | None) -> None:
    """Say in one line where Ctrl-C stopped the diagnosis and what, if anything, is stored."""
    from gdscope.diagnose.partial import Interrupted

    again = "run the command again to diagnose from the start"
    if not isinstance(stop, Interrupted):  # before the trial was built, or after it was measured
        text = f"interrupted outside the run (building the model and data, or storing); {again}"
    elif stop.stored is not None:
        text = (
            f"interrupted {stop.partial.summary()}; stored as run {stop.stored!r} (status "
            f"interrupted) in {results}: gdscope show {results} lists it; {again}"
        )
    else:
        hint = " (--results DIR keeps an interrupted run's series)" if results is None else ""
        text = f"interrupted {stop.partial.summary()}; nothing is stored{hint}; {again}"
    stderr.print(text, highlight=False, markup=False, soft_wrap=True)
