"""``bastion campaign``: many models, assessments and settings, resumable, on any engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.cli._guard import err_console, fail, user_errors
from bastion.core.errors import ConfigError

if TYPE_CHECKING:
    from bastion.campaign.runner import Progress as RunProgress
    from bastion.campaign.store import Store

app = typer.Typer(
    help="Campaigns: every model x assessment x setting, resumable, on one process, a process "
    "pool or Ray.",
    no_args_is_help=True,
)
console = Console(emoji=False)

_STORE_HELP = "Results store: sqlite:///path.db (default sqlite:///campaign.db) or postgresql://..."
StoreOpt = Annotated[str | None, typer.Option("--store", help=_STORE_HELP)]
EngineOpt = Annotated[
    str, typer.Option("--engine", help="local (one process), processes (a pool) or ray.")
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Workers (default: one per CPU).")
]
AddressOpt = Annotated[
    str | None, typer.Option("--address", help="A running Ray cluster (with --engine ray).")
]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _open_store(url: str | None) -> Store:
    from bastion.campaign.store import Store

    return Store.open(url)


def _existing_store(url: str | None) -> Store:
    """A store to read: refused (not created) when its SQLite file does not exist."""
    from bastion.campaign.store import default_url

    url = url or default_url()
    if url.startswith("sqlite:///"):
        path = Path(url.split(":///", 1)[1]).expanduser()
        if str(path) != ":memory:" and not path.is_file():
            raise ConfigError(f"no campaign store at {path}: run a campaign first, or give --store")
    return _open_store(url)


@app.command()
def plan(
    file: Annotated[Path, typer.Argument(help="The campaign file (YAML or JSON).")],
    store: StoreOpt = None,
    engine: EngineOpt = "local",
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    estimate: Annotated[
        bool, typer.Option(help="Load and time each target to estimate the cost.")
    ] = True,
) -> None:
    """Print the campaign's cells and what they should cost, running nothing."""
    from bastion.campaign.engines import ENGINES, cpus
    from bastion.campaign.estimate import estimate_cells, wall_time
    from bastion.campaign.estimate import history as past_seconds
    from bastion.campaign.spec import expand, load_campaign, shard_count

    with user_errors():
        if engine not in ENGINES:
            raise ConfigError(f"--engine takes {', '.join(ENGINES)}; got {engine!r}")
        if address is not None and engine != "ray":
            raise ConfigError("--address names a Ray cluster: give --engine ray")
        spec, root = load_campaign(file)
        cells = expand(spec, root)
        finished: set[str] = set()
        history: dict[str, float] = {}
        if store is not None or Path("campaign.db").is_file():
            opened = _open_store(store)
            finished = opened.done(c.key for c in cells)
            history = past_seconds(opened, spec.name)
        seconds: list[float] = []
        if estimate:
            with console.status("timing the targets"):
                seconds, _ = estimate_cells(cells, history=history)
    n_workers = 1 if engine == "local" else (workers or cpus())
    started = engine if engine != "ray" or address is None else "ray-address"
    table = Table(title=f"Campaign {spec.name}: {len(cells)} cells", title_justify="left")
    for col in ("#", "target", "assessment", "kind", "setting", "tasks", "estimate", "state"):
        table.add_column(col, justify="right" if col in ("#", "tasks", "estimate") else "left")
    shown = cells if len(cells) <= 60 else cells[:50]
    for c in shown:
        setting = c.label.partition("[")[2].rstrip("]") or "-"
        table.add_row(
            str(c.position + 1),
            escape(c.target.name),
            escape(c.assessment.name),
            c.kind,
            escape(setting),
            str(shard_count(c) + (1 if shard_count(c) > 1 else 0)),
            (_duration(seconds[c.position]) if seconds[c.position] >= 1 else "<1 s")
            if seconds
            else "-",
            "done" if c.key in finished else "to run",
        )
    console.print(table)
    if len(shown) < len(cells):
        console.print(f"... and {len(cells) - len(shown)} more cells", highlight=False)
    todo = [s for c, s in zip(cells, seconds, strict=False) if c.key not in finished]
    if seconds:
        wall = wall_time(todo, n_workers, started)
        console.print(
            f"estimate: {_duration(sum(todo))} of work for the {len(cells) - len(finished)} "
            f"cells to run; about {_duration(wall)} on {engine} with "
            f"{n_workers} worker{'s' if n_workers != 1 else ''}",
            highlight=False,
        )
    if finished:
        console.print(f"{len(finished)} cells are already done in the store and will be skipped")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The campaign file (YAML or JSON).")],
    store: StoreOpt = None,
    engine: EngineOpt = "local",
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the combined report.")] = Path(
        "campaign-report"
    ),
    fmt: Annotated[
        str, typer.Option("--format", help="Report formats: html, json, md, sarif.")
    ] = "html,json,md,sarif",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and store the plan; run nothing.")
    ] = False,
) -> None:
    """Run every cell not yet done; a rerun skips what is finished and retries what failed."""
    from bastion.campaign.engines import make_engine
    from bastion.campaign.runner import run_campaign
    from bastion.campaign.spec import expand, load_campaign, shard_count
    from bastion.cli.scan import check_out_folder

    with user_errors():
        spec, root = load_campaign(file)
        formats = _campaign_formats(fmt)
        check_out_folder(out)
        cells = expand(spec, root)
        opened = _open_store(store)
        if dry_run:
            run_id = opened.new_run(
                spec.name,
                spec.model_dump(mode="json"),
                cells,
                engine=None,
                tasks=[shard_count(c) for c in cells],
            )
            done = opened.done(c.key for c in cells)
            console.print(
                f"campaign {spec.name}: {len(cells)} cells stored as run #{run_id} in "
                f"{opened.url} ({len(done)} already done); nothing run (--dry-run)",
                highlight=False,
            )
            return
        runner_engine = make_engine(engine, workers=workers, address=address)
    console.print(
        f"campaign [bold]{escape(spec.name)}[/]: {len(cells)} cells on "
        f"{escape(runner_engine.describe())}; results in {escape(opened.url)}",
        highlight=False,
    )
    with _bar(runner_engine.name) as (bar, task_id):

        def progress(p: RunProgress) -> None:
            running = ", ".join(p.running[:2]) + (" ..." if len(p.running) > 2 else "")
            bar.update(
                task_id,
                completed=p.done + p.failed,
                total=p.total,
                description=f"{runner_engine.name}: {running or 'starting'}"[:70],
            )
            if p.error and p.last:
                bar.console.print(
                    f"[bold red]failed:[/] {escape(p.last)}: {escape(p.error)}", highlight=False
                )

        try:
            summary = run_campaign(
                spec,
                root,
                opened,
                runner_engine,
                cells=cells,
                progress=progress,
            )
        finally:
            runner_engine.close()
    console.print(
        f"{summary.done} of {summary.cells} cells done ({summary.skipped} from earlier runs, "
        f"{summary.computed} tasks computed now) in {_duration(summary.seconds)}",
        highlight=False,
    )
    with user_errors():
        written = _write_report(opened, summary.run, out, formats)
    console.print(f"report: {', '.join(str(p) for p in written)}", highlight=False)
    if summary.interrupted:
        err_console.print("[yellow]interrupted:[/] rerun the same command to continue")
        fail(130)
    if summary.failed:
        err_console.print(
            f"[bold red]{len(summary.failed)} cells failed[/] (see `bastion campaign status`); "
            "the others are done"
        )
        fail(1)


def _campaign_formats(text: str) -> list[str]:
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    known = ("html", "json", "md", "sarif")
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise ConfigError(f"--format takes {', '.join(known)} (comma-separated); got {text!r}")
    return list(dict.fromkeys(names))


@contextmanager
def _bar(engine: str) -> Iterator[tuple[Any, Any]]:
    """The live progress bar (on stderr, gone when done) and its one task."""
    from bastion.cli.scan import _progress

    with _progress() as progress:
        yield progress, progress.add_task(f"{engine}: starting", total=None)


def _write_report(store: Store, run_id: int, out: Path, formats: list[str]) -> list[Path]:
    from bastion import __version__
    from bastion.campaign.report import CampaignInfo, cell_reports, write_campaign_report

    found = next(r for r in store.runs() if r.id == run_id)
    info = CampaignInfo(found.campaign, found.id, found.created, found.engine, __version__)
    try:
        return write_campaign_report(info, cell_reports(store, run_id), out, formats)
    except OSError as exc:
        raise ConfigError(f"cannot write the report into {out}: {exc.strerror}") from None


@app.command()
def status(
    run_ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN]", help="NAME (its latest run), NAME~1 (the one before) or #ID."
        ),
    ] = None,
    store: StoreOpt = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow the run live until every cell is finished.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks, with --watch.")] = 2.0,
) -> None:
    """Progress of a run: done, failed, pending; the failures with their errors."""
    from bastion.campaign.report import cell_reports

    with user_errors():
        if interval <= 0:
            raise ConfigError(f"--interval must be positive, got {interval}")
        opened = _existing_store(store)
        found = opened.run(run_ref)
    if watch:
        with _bar(f"run #{found.id}") as (bar, task_id):
            while True:
                counts = _counts(cell_reports(opened, found.id))
                finished = counts["done"] + counts["failed"]
                total = sum(counts.values())
                bar.update(
                    task_id,
                    completed=finished,
                    total=total,
                    description=f"run #{found.id}: {counts['running']} running",
                )
                if finished == total:
                    break
                time.sleep(interval)
    cells = cell_reports(opened, found.id)
    counts = _counts(cells)
    console.print(
        f"campaign [bold]{escape(found.campaign)}[/] run #{found.id} ({found.created}, "
        f"{found.engine or 'dry run'}): {counts['done']} done, {counts['failed']} failed, "
        f"{counts['running']} running, {counts['pending']} pending of {len(cells)} cells",
        highlight=False,
    )
    for c in cells:
        if c.status == "failed":
            shown = ",".join(f"{k}={v}" for k, v in c.settings.items())
            label = f"{c.target}/{c.assessment}" + (f"[{shown}]" if shown else "")
            tries = f"{c.attempts} attempt{'s' if c.attempts != 1 else ''}"
            console.print(
                f"[bold red]failed:[/] {escape(label)} ({tries}): {escape(c.error or '')}",
                highlight=False,
            )


def _counts(cells: list[Any]) -> dict[str, int]:
    counts = {"done": 0, "failed": 0, "running": 0, "pending": 0}
    for c in cells:
        counts[c.status if c.status in counts else "pending"] += 1
    return counts


@app.command()
def report(
    run_ref: Annotated[
        str | None,
        typer.Argument(metavar="[RUN]", help="NAME, NAME~1 or #ID (default: the newest run)."),
    ] = None,
    store: StoreOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("campaign-report"),
    fmt: Annotated[
        str, typer.Option("--format", help="Report formats: html, json, md, sarif.")
    ] = "html,json,md,sarif",
) -> None:
    """Write one combined report of a run: the model x assessment matrix and every cell."""
    from bastion.cli.scan import check_out_folder

    with user_errors():
        formats = _campaign_formats(fmt)
        check_out_folder(out)
        opened = _existing_store(store)
        found = opened.run(run_ref)
        written = _write_report(opened, found.id, out, formats)
    console.print(f"report: {', '.join(str(p) for p in written)}", highlight=False)


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="The earlier run: NAME, NAME~1 or #ID.")],
    new: Annotated[str, typer.Argument(help="The later run: NAME, NAME~1 or #ID.")],
    store: StoreOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write diff.json and diff.md here.")
    ] = None,
) -> None:
    """What changed between two runs, cell by cell; exit 1 on a significant regression.

    Cells are matched by target, assessment and setting, so two versions of a model line up;
    a change counts only when it is significant from the intervals, never on noise."""
    from bastion.campaign.diff import diff_runs

    with user_errors():
        if out is not None:
            from bastion.cli.scan import check_out_folder

            check_out_folder(out)
        opened = _existing_store(store)
        a, b = opened.run(old), opened.run(new)
        result = diff_runs(opened, a, b)
    result.print(console)
    if out is not None:
        with user_errors():
            written = result.write(out)
        console.print(f"diff: {', '.join(str(p) for p in written)}", highlight=False)
    if result.regressions:
        err_console.print(
            f"[bold red]regressed:[/] {len(result.regressions)} significant regressions "
            f"from run #{a.id} to run #{b.id}"
        )
        fail(1)
