"""Study commands: run the catalogue's studies and read a results directory.

``gdscope run`` runs studies into a results directory and prints their verdicts; ``report``,
``show``, ``verify`` and ``export`` read that directory (an HTML page, the stored verdicts, the
verdicts judged again, the recorded numbers as CSV or Parquet); ``list claims`` lists the catalogue.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gdscope._output import check_target, reserved
from gdscope.cli.app import UserError, finite_or_none, stderr, stdout
from gdscope.cli.printing import print_plans, print_verdicts


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
        typer.Option(
            "--set",
            help="dotted override KEY=VALUE, e.g. sweep.model.width=[256,1024] or base.steps=50",
        ),
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
    max_trials: Annotated[
        int,
        typer.Option(help="refuse a study that expands to more trials (counted before expanding)"),
    ] = 100_000,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="validate and print each study's trials, sweep, how many are stored and "
            "which claims are swept too little to judge; run and write nothing",
        ),
    ] = False,
) -> None:
    """Run studies (default: the whole catalogue at quick scale) and print their verdicts.

    The results directory stays locked for the whole command: a second `gdscope run` on it stops
    at once with a message naming this one's pid. Killed and run again, it resumes: finished
    trials are kept and skipped. Exit status 1 when a trial failed (each failed trial's error is
    printed in one line), 2 on bad input.
    """
    from rich.progress import MofNCompleteColumn, Progress

    from gdscope import api
    from gdscope.runners import make_runner

    names = studies or list(api.catalog())
    for name in names:
        if not name.strip():
            raise UserError(f"study: empty name {name!r}; give a catalogue name or a .toml file")
    for flag, count in (("--max-trials", max_trials), ("--workers", workers)):
        if count < 1:
            raise UserError(f"{flag}: expected a positive integer, got {count}")
    _folder_or_error(results, "--results")  # the dry run too: it must refuse what a run refuses
    engine = _user_errors(
        lambda: make_runner(runner, workers=workers, address=address, batch=batch)
    )
    loaded = _studies_or_error(api, names, set_ or [], scale)
    if dry_run:
        plans = [
            _user_errors(
                lambda n=n: api.plan_study(
                    n, scale=scale, results=results, overrides=set_ or [], max_trials=max_trials
                )
            )
            for n in names
        ]
        print_plans(plans)
        return
    # run_studies validates every trial of every study before it creates or locks the store,
    # so a user error writes nothing
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())  # trials done / total
    bar = Progress(*columns, console=stderr, transient=True)
    what = f"{len(loaded)} stud{'y' if len(loaded) == 1 else 'ies'}"
    tasks: list[Any] = []

    outcomes: dict[str, int] = {}

    def progress(done: int, total: int) -> None:
        if not tasks:  # shown once the trials run: a user error before prints alone
            bar.start()
            tasks.append(bar.add_task(what, total=None))
        bad = ", ".join(f"{outcomes[s]} {s}" for s in ("failed", "diverged") if outcomes.get(s))
        shown = f"{what} ({bad})" if bad else what
        bar.update(tasks[0], completed=done, total=total, description=shown)

    def stored(status: str) -> None:
        outcomes[status] = outcomes.get(status, 0) + 1

    def finished(result: Any) -> None:
        stderr.print(
            f"{result.study.name}: {result.trials} trials ({result.ran} run, "
            f"{result.failed} failed), judged at {result.wall_time_s:.1f} s"
            + (f"; {result.rerun}" if result.rerun else ""),
            highlight=False,
            soft_wrap=True,
        )

    try:
        with engine:
            judged = _user_errors(
                lambda: api.run_studies(
                    loaded,
                    scale=scale,
                    runner=engine,
                    results=results,
                    progress=progress,
                    on_study=finished,
                    on_trial=stored,
                    max_trials=max_trials,
                )
            )
    except KeyboardInterrupt:
        judged = None
    finally:
        if tasks:  # stopping a bar never started prints an empty line
            bar.stop()
    if judged is None:  # Ctrl-C: say what is kept, after the bar is gone
        stderr.print(
            f"interrupted: {sum(outcomes.values())} trials of this run are stored in {results}; "
            "the same command resumes (stored trials are kept and skipped)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(130)
    verdict_rows = [(r.study.with_scale(r.scale), v) for r in judged for v in r.verdicts]
    print_verdicts(verdict_rows)
    stdout.print(f"results: {results}")
    if report:
        stdout.print(f"report: {api.report(results)}")
    failed = [(r.study.name, line) for r in judged for line in r.errors]
    if failed:
        for name, line in failed:
            stderr.print(
                f"failed trial of {name}: {line}", highlight=False, markup=False, soft_wrap=True
            )
        stderr.print(
            f"{len(failed)} trial(s) failed (stored with their tracebacks; the verdicts "
            "above name them)",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)


def report(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="output file, or - for stdout (default: DIR/report.html, or DIR/verdicts.md)",
        ),
    ] = None,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown",
            help="write the verdicts as Markdown (study, scale, verdicts, wall time, date, "
            "machine, findings), e.g. -o docs/verdicts.md",
        ),
    ] = False,
    figures: Annotated[
        str | None,
        typer.Option(
            "--figures",
            help="also write every figure as SVG and PDF files into this folder (for a paper)",
        ),
    ] = None,
) -> None:
    """Write the results as one self-contained HTML page: verdicts, figures, environment.

    With ``-o -`` the page (or the Markdown) goes to standard output, as ``export --csv -``.
    """
    from gdscope import api

    if output == "-":  # the document alone on stdout; what else was written on stderr
        from gdscope.report import render_report, write_figures

        if figures is not None:
            _folder_or_error(figures, "--figures")
        fmt = "markdown" if markdown else "html"
        text = _user_errors(lambda: render_report(results, fmt=fmt))
        if figures is not None:
            _user_errors(lambda: write_figures(results, figures))
            stderr.print(f"figures: {figures} (SVG and PDF)", highlight=False, markup=False)
        sys.stdout.write(text)
        return
    # every target is checked before the first file is written
    default = "verdicts.md" if markdown else "report.html"
    target = output if output is not None else str(Path(results) / default)
    check_target(target, "--output")  # and a folder on its way that is a file
    if figures is not None:
        _folder_or_error(figures, "--figures")
    written = _user_errors(lambda: api.report(results, output, markdown=markdown, figures=figures))
    stdout.print(f"report: {written}")
    if figures is not None:
        stdout.print(f"figures: {figures} (SVG and PDF)")


def show(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print {trials: [{study, scale, counts}], verdicts: [...]} as JSON instead",
        ),
    ] = False,
) -> None:
    """Show the trial counts of each stored study and scale, then the stored verdicts.

    A study's trials are those linked to it (a trial shared by two studies counts for both).
    With ``--json``, each verdict carries its claim's ``role`` and ``finding`` from the study
    file and the study's ``--set`` ``overrides``, and NaN statistics are ``null``.
    """
    from types import SimpleNamespace

    from gdscope.report.collect import scaled_seeds
    from gdscope.store import Store

    store = _user_errors(lambda: Store(results, read_only=True))
    _say_if_damaged(store)
    specs = {(study["name"], study["scale"]): study.get("spec") or {} for study in store.studies()}
    claims = {
        (name, scale, str(claim.get("id"))): claim
        for (name, scale), spec in specs.items()
        for claim in spec.get("claims") or []
        if isinstance(claim, dict)
    }
    verdicts = []
    for row in store.verdicts():
        claim = claims.get((row["study"], row["scale"], row["claim_id"]), {})
        overrides = list(specs.get((row["study"], row["scale"]), {}).get("overrides") or [])
        role, finding = claim.get("role", "paper"), claim.get("finding")
        verdicts.append({**row, "role": role, "finding": finding, "overrides": overrides})
    counts = store.trial_counts()
    if as_json:
        trials = [{"study": s, "scale": c, "counts": per} for (s, c), per in counts.items()]
        text = json.dumps({"trials": trials, "verdicts": finite_or_none(verdicts)}, indent=1)
        sys.stdout.write(text + "\n")
        return
    for (study, scale), per in counts.items():
        counted = ", ".join(f"{n} {status}" for status, n in per.items())
        stdout.print(f"{study} ({scale}): {counted}", highlight=False, markup=False)
    rows = [
        (
            SimpleNamespace(
                name=f"{row['study']} ({row['scale']})",
                seeds=scaled_seeds(specs.get((row["study"], row["scale"]), {}), row["scale"]),
                overrides=row["overrides"],
            ),
            SimpleNamespace(**row),
        )
        for row in verdicts
    ]
    print_verdicts(rows)  # with the one-seed warning of run and verify


def verify(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
) -> None:
    """Re-judge every stored study from the stored trials (no training) and print the verdicts."""
    from gdscope import api
    from gdscope.store import Store, StoreError

    with contextlib.suppress(StoreError):  # a missing or broken store: verify says what
        _say_if_damaged(Store(results, read_only=True))
    outcomes = _user_errors(lambda: api.verify(results))
    print_verdicts([(r.study.with_scale(r.scale), v) for r in outcomes for v in r.verdicts])


def export(
    results: Annotated[str, typer.Argument(help="results directory")] = "gdscope-results",
    csv: Annotated[str | None, typer.Option("--csv", help="CSV file, or - for stdout")] = None,
    parquet: Annotated[str | None, typer.Option(help="Parquet file (needs pyarrow)")] = None,
    verdicts: Annotated[
        str | None,
        typer.Option("--verdicts", help="the stored verdicts as CSV: a file, or - for stdout"),
    ] = None,
    study: Annotated[str | None, typer.Option(help="only this study")] = None,
) -> None:
    """Export the results as CSV or Parquet, and the verdicts as CSV.

    --csv / --parquet: every recorded number with its trial's config (long form); --verdicts:
    one row per stored verdict.
    """
    from gdscope.store import Store
    from gdscope.store import export as exporting

    if csv is None and parquet is None and verdicts is None:
        raise UserError(
            "export: nothing to write; give --csv FILE|-, --parquet FILE and/or --verdicts FILE|-"
        )
    if csv == verdicts == "-":
        raise UserError(
            "export: --csv - and --verdicts - would write two CSV tables into one standard "
            "output; send only one of them to stdout (-) and the other to a file"
        )
    outputs = (("--parquet", parquet), ("--csv", csv), ("--verdicts", verdicts))
    streams = {option for option, path in outputs if path == "-" and option != "--parquet"}
    for option, path in outputs:
        if path is not None and option not in streams:
            check_target(path, option)  # every path before the first file is written
    store = _user_errors(lambda: Store(results, read_only=True))
    exporting.long_form(store, study)  # unknown study: error before anything is written
    writers = {
        "--parquet": lambda out: (exporting.write_parquet(store, out, study), "rows"),
        "--csv": lambda out: (exporting.write_csv(store, out, study), "rows"),
        "--verdicts": lambda out: (exporting.write_verdicts(store, out), "verdicts"),
    }
    for option, path in outputs:
        if option in streams:
            writers[option](sys.stdout)
        elif path is not None:
            rows, what = writers[option](path)
            stderr.print(f"{rows} {what} -> {path}", highlight=False)


def _folder_or_error(folder: str, option: str) -> None:
    """Refuse a folder to write that is a file, lies below one or is a store's file or lock."""
    path = Path(folder)
    if not str(folder).strip():
        return  # the store names this one
    what = reserved(folder)  # a folder there would break the store
    if what:
        raise UserError(f"{option}={folder} is {what}; give another folder")
    above = next((p for p in (path, *path.parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        where = "is a file" if above == path else f"lies below the file {above}"
        raise UserError(f"{option}={folder} {where}; give a folder, new or existing")


def _say_if_damaged(store: Any) -> None:
    """Print one ``warning:`` line if finished trials of ``store`` lost their series."""
    from gdscope.store import damage

    counts = store.damaged()
    if counts:
        text = damage.message(store.path, counts)
        stderr.print(f"warning: {text}", highlight=False, markup=False, soft_wrap=True)


def _studies_or_error(api: Any, names: list[str], overrides: list[str], scale: str) -> Any:
    """Load the studies ``names``, each checked at ``scale``, none twice (one-line user errors)."""
    studies = [_user_errors(lambda n=n: api.load(n, overrides)) for n in names]
    _user_errors(lambda: [study.with_scale(scale) for study in api.once(studies)])
    return studies


def _user_errors(fn: Any) -> Any:
    """Call ``fn``; a study, store, Ray address or worker start error is a one-line UserError."""
    from gdscope.runners._jobs import WorkerStartError
    from gdscope.runners.ray import AddressError
    from gdscope.store import StoreError
    from gdscope.studies import StudyError

    try:
        return fn()
    except AddressError as err:  # names --address, not the Python argument
        raise UserError(err.message(cli=True)) from None
    except (StudyError, StoreError, WorkerStartError) as err:
        raise UserError(str(err)) from None
