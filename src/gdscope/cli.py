"""``gdscope`` command line: a thin layer over the Python API.

Every user error ends in one line ``error: <field>: <what was seen>; <what is accepted>`` on stderr
and exit code 2, with no traceback and nothing written.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="gdscope",
    help="Measure what deep-learning optimization theory predicts, and judge it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_out = Console()
if not _out.is_terminal:  # piped or captured: no terminal width to respect, keep tables whole
    _out.width = 160


@app.callback()
def _root() -> None:
    """Measure what deep-learning optimization theory predicts, and judge it."""


_err = Console(stderr=True)


class UserError(Exception):
    """An error in what the user asked for: reported as one line, exit code 2."""


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what}: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command()
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
    data: Annotated[str, typer.Option(help="dataset name (see gdscope.data.DATASETS)")] = "sphere",
    n: Annotated[int, typer.Option(help="number of training examples")] = 64,
    d: Annotated[int, typer.Option(help="input dimension (synthetic data)")] = 16,
    data_option: Annotated[
        list[str] | None, typer.Option(help="extra dataset argument KEY=VALUE (repeatable)")
    ] = None,
    optimizer: Annotated[str, typer.Option(help="gd | sgd | heavy_ball | nesterov | …")] = "gd",
    lr: Annotated[float, typer.Option(help="learning rate")] = 0.1,
    momentum: Annotated[float | None, typer.Option(help="momentum β")] = None,
    l1: Annotated[float, typer.Option(help="L1 strength (prox_gd, fista, subgradient)")] = 0.0,
    loss: Annotated[str, typer.Option(help="auto | mse | cross_entropy | hinge")] = "auto",
    steps: Annotated[int, typer.Option(help="optimizer updates")] = 100,
    batch_size: Annotated[
        int | None, typer.Option(help="mini-batch size; default full batch")
    ] = None,
    probe: Annotated[
        list[str] | None, typer.Option(help="NAME=EVERY, e.g. grad_norm=10 (repeatable)")
    ] = None,
    stop_loss: Annotated[float | None, typer.Option(help="stop when loss ≤ this")] = None,
    stop_accuracy: Annotated[float | None, typer.Option(help="stop when accuracy ≥ this")] = None,
    seed: Annotated[int, typer.Option(help="seeds model, data and batch order")] = 0,
    dtype: Annotated[str, typer.Option(help="float32 | float64")] = "float32",
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print the trace as JSON")] = False,
) -> None:
    """Train one configured network and print its probes and final status."""
    from gdscope.config import TrialConfig
    from gdscope.trial import run_trial

    probes = {"loss": 1, **_key_values(probe or [], "--probe")}
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
        },
        "data": {
            "name": data,
            "n": n,
            "d": d,
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
    _check_device(config.device)
    trace = run_trial(config)
    if as_json:
        _out.print_json(
            json.dumps(
                {
                    "config": config.model_dump(mode="json"),
                    "status": trace.status,
                    "steps": trace.steps,
                    "reason": trace.reason,
                    "records": trace.records,
                }
            )
        )
        return
    _out.print(_trace_table(trace))
    colour = {"completed": "green", "stopped": "cyan", "diverged": "red"}[trace.status]
    _out.print(
        f"status: [{colour}]{trace.status}[/] after {trace.steps} steps ({trace.reason}); "
        f"{trace.wall_time_s:.2f} s"
    )


@app.command("verify-probes")
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
        table.add_row(c.case, c.quantity, f"{c.rel_err:.2e}", f"{c.tolerance:.0e}", mark)
    _out.print(table)
    failed = [c for c in checks if not c.ok]
    _out.print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command()
def bench(
    small: Annotated[bool, typer.Option(help="CPU sizes (a few minutes on 2 cores)")] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu | cuda; default cuda when available")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="run only these scripts: ntk, hessian (repeatable)")
    ] = None,
) -> None:
    """Time gdscope against the anchor methods; print one JSON line per measurement."""
    import subprocess

    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    scripts = sorted(folder.glob("bench_*.py"))
    if not scripts:
        raise UserError(f"bench: no benchmark scripts in {folder}; run from a source checkout")
    names = {s.stem.removeprefix("bench_"): s for s in scripts}
    for name in only or []:
        if name not in names:
            raise UserError(f"--only: unknown benchmark {name!r}; accepted: {', '.join(names)}")
    chosen = [names[n] for n in only] if only else list(names.values())
    args = [*(["--small"] if small else []), *(["--device", device] if device else [])]
    for script in chosen:
        result = subprocess.run([sys.executable, str(script), *args], cwd=folder, check=False)
        if result.returncode != 0:
            raise typer.Exit(result.returncode)


list_app = typer.Typer(help="List what gdscope knows.", no_args_is_help=True)
app.add_typer(list_app, name="list")

_STATUS_STYLE = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}


@app.command()
def run(
    studies: Annotated[
        list[str] | None, typer.Argument(help="catalogue names or TOML files; default: all")
    ] = None,
    scale: Annotated[
        str,
        typer.Option(help="quick (CPU, seconds to a minute a study) | paper (GPU) | smoke (tests)"),
    ] = "quick",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="dotted override KEY=VALUE, e.g. sweep.width=[256,1024]"),
    ] = None,
    workers: Annotated[int, typer.Option(help="processes for the local runner")] = 1,
    runner: Annotated[
        str, typer.Option(help="local (this machine) | ray (a Ray cluster, see --address)")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: auto | ray://HOST:10001 (default: a local Ray instance)"),
    ] = None,
    results: Annotated[str, typer.Option(help="results directory")] = "gdscope-results",
    batch: Annotated[
        bool | None,
        typer.Option(
            help="train trials that differ only in seed / lr / init scale together as one "
            "ensemble (same results); default: on for CUDA trials, off on the CPU"
        ),
    ] = None,
    report: Annotated[
        bool, typer.Option(help="write DIR/report.html at the end (gdscope report)")
    ] = True,
) -> None:
    """Run studies (default: the whole catalogue at quick scale) and print their verdicts.

    The results directory stays locked for the whole command: a second `gdscope run` on it stops
    at once with a message naming this one's pid. Killed and run again, it resumes: finished
    trials are kept and skipped.
    """
    from rich.progress import Progress

    from gdscope import api
    from gdscope.runners import WorkerPool
    from gdscope.store import Store

    names = studies or list(api.catalog())
    loaded = [_study_or_error(api, name, set_ or []) for name in names]  # validate all first
    _user_errors(lambda: api.check_runner(runner, workers, address))
    store = _user_errors(lambda: Store(results))
    verdict_rows = []
    pool = WorkerPool(workers) if runner == "local" and workers > 1 else None
    with store.writer(), pool or nullcontext(), Progress(console=_err, transient=True) as bar:
        for name, study in zip(names, loaded, strict=True):
            task = bar.add_task(study.name, total=None)

            def progress(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            result = _user_errors(
                lambda name=name: api.run_study(
                    name,
                    scale=scale,
                    runner=runner,
                    results=store,
                    workers=workers,
                    address=address,
                    batch=batch,
                    pool=pool,
                    overrides=set_ or [],
                    progress=progress,
                )
            )
            bar.remove_task(task)
            verdict_rows.extend((result.study, v) for v in result.verdicts)
            _err.print(
                f"{result.study.name}: {result.trials} trials ({result.ran} run, "
                f"{result.failed} failed) in {result.wall_time_s:.1f} s",
                highlight=False,
            )
    _print_verdicts(verdict_rows)
    _out.print(f"results: {results}")
    if report:
        _out.print(f"report: {api.report(results)}")


@app.command()
def report(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="HTML file (default: DIR/report.html)")
    ] = None,
) -> None:
    """Write the results as one self-contained HTML page: verdicts, figures, environment."""
    from gdscope import api

    _out.print(f"report: {_user_errors(lambda: api.report(results, output))}")


@list_app.command("claims")
def list_claims(
    results: Annotated[
        str, typer.Option(help="results directory for the last verdicts")
    ] = "gdscope-results",
) -> None:
    """List the catalogue's claims: id, seed paper, title, provenance and the last verdict."""
    from gdscope import api

    last: dict[tuple[str, str], str] = {}
    if (Path(results) / "gdscope.sqlite").exists():
        from gdscope.store import Store

        for row in Store(results, create=False).verdicts():
            last[(row["study"], row["claim_id"])] = row["status"]
    table = Table(box=None, header_style="bold")
    for column in ("study", "claims", "seed", "provenance", "last verdict"):
        table.add_column(column, no_wrap=True)
    table.add_column("title", no_wrap=True, overflow="ellipsis")
    for name in api.catalog():
        study = api.load(name)
        statuses = [last.get((study.name, c.id), "") for c in study.claims]
        shown = ", ".join(f"[{_STATUS_STYLE.get(s, 'white')}]{s}[/]" for s in statuses if s) or "-"
        table.add_row(
            study.name,
            ", ".join(study.claim_ids),
            study.seed_paper,
            study.provenance,
            shown,
            study.title,
        )
    _out.print(table)


@app.command()
def show(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
) -> None:
    """Show the stored verdicts and trial counts of a results directory."""
    from types import SimpleNamespace

    from gdscope.store import Store

    store = _user_errors(lambda: Store(results, create=False))
    counts: dict[str, dict[str, int]] = {}
    for row in store.trials():
        per = counts.setdefault(row["study"], {})
        per[row["status"]] = per.get(row["status"], 0) + 1
    for study, per in sorted(counts.items()):
        _out.print(f"{study}: " + ", ".join(f"{n} {status}" for status, n in sorted(per.items())))
    rows = [
        (SimpleNamespace(name=f"{row['study']} ({row['scale']})"), SimpleNamespace(**row))
        for row in store.verdicts()
    ]
    _print_verdicts(rows)


@app.command()
def verify(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
) -> None:
    """Re-judge every stored study from the stored trials (no training) and print the verdicts."""
    from gdscope import api

    outcomes = _user_errors(lambda: api.verify(results))
    _print_verdicts([(r.study, v) for r in outcomes for v in r.verdicts])


@app.command()
def export(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
    csv: Annotated[str | None, typer.Option("--csv", help="CSV file, or - for stdout")] = None,
    parquet: Annotated[str | None, typer.Option(help="Parquet file (needs pyarrow)")] = None,
    study: Annotated[str | None, typer.Option(help="only this study")] = None,
) -> None:
    """Export every recorded number with its trial's config (long form) as CSV and/or Parquet."""
    from gdscope import export as exporting
    from gdscope.store import Store

    if csv is None and parquet is None:
        raise UserError("export: nothing to write; give --csv FILE|- and/or --parquet FILE")
    store = _user_errors(lambda: Store(results, create=False))
    exporting.long_form(store, study)  # unknown study: error before anything is written
    if parquet is not None:
        rows = exporting.write_parquet(store, parquet, study)
        _err.print(f"{rows} rows -> {parquet}", highlight=False)
    if csv == "-":
        exporting.write_csv(store, sys.stdout, study)
    elif csv is not None:
        rows = exporting.write_csv(store, csv, study)
        _err.print(f"{rows} rows -> {csv}", highlight=False)


def _study_or_error(api: Any, name: str, overrides: list[str]) -> Any:
    return _user_errors(lambda: api.load(name, overrides))


def _user_errors(fn: Any) -> Any:
    from gdscope.store import StoreError
    from gdscope.studies import StudyError

    try:
        return fn()
    except (StudyError, StoreError) as err:
        raise UserError(str(err)) from None


def _interval(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None or lo != lo or hi != hi:  # missing or NaN
        return ""
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _print_verdicts(rows: list[tuple[Any, Any]]) -> None:
    """Print a compact verdict table, then one line per verdict with its reason."""
    table = Table(box=None, header_style="bold")
    for column in ("study", "claim", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("statistic", "CI", "band", "n"):
        table.add_column(column)
    for study, v in rows:
        style = _STATUS_STYLE.get(v.status, "white")
        ci = v.ci or (None, None)
        band = v.band or (None, None)
        table.add_row(
            study.name,
            v.claim_id,
            f"[{style}]{v.status}[/]",
            _fmt(v.statistic),
            _interval(*ci),
            _interval(*band),
            str(v.n_points),
        )
    _out.print(table)
    for _, v in rows:
        _out.print(f"  {v.claim_id}: {v.reason}", highlight=False, markup=False, soft_wrap=True)
    counts = {s: sum(v.status == s for _, v in rows) for s in _STATUS_STYLE}
    _out.print(", ".join(f"{n} {s}" for s, n in counts.items()))


def _validated(cls: Any, raw: dict[str, Any]) -> Any:
    from gdscope.config import format_validation_error

    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(err, cls).replace("\n", "; ")) from None


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"device: unknown device {device!r}; accepted: cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {device!r} requested but CUDA is not available here; use cpu")


def _trace_table(trace: Any, rows: int = 12, wide: int = 5) -> Table:
    """Tabulate the global metrics at up to ``rows`` checkpoints of the sparsest schedule.

    With more than ``wide`` metrics the table is transposed (one row per metric) so that it fits.
    """
    metrics = [m for m in trace.metrics if "/" not in m]
    recorded = [trace.records[m][0] for m in metrics]
    sparsest = min(recorded, key=len) if recorded else []
    steps = sorted(set(sparsest) if len(sparsest) > 1 else {s for r in recorded for s in r})
    limit = rows if len(metrics) <= wide else 5
    if len(steps) > limit:
        steps = sorted({steps[round(i * (len(steps) - 1) / (limit - 1))] for i in range(limit)})
    lookup = {m: dict(zip(*trace.records[m], strict=True)) for m in metrics}
    if len(metrics) <= wide:
        table = Table("step", *metrics, box=None, header_style="bold")
        for step in steps:
            table.add_row(str(step), *(_fmt(lookup[m].get(step)) for m in metrics))
        return table
    table = Table(box=None, header_style="bold")
    table.add_column("metric \\ step", no_wrap=True)
    for step in steps:
        table.add_column(str(step), no_wrap=True)
    for m in metrics:
        table.add_row(m, *(_fmt(lookup[m].get(step)) for step in steps))
    return table


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def main() -> None:
    """Entry point of the ``gdscope`` console script."""
    from gdscope.store import StoreError

    try:
        app()
    except (UserError, ValueError, FileNotFoundError, ImportError, StoreError) as err:
        _err.print(f"error: {err}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
