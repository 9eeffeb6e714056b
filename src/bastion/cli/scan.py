"""``bastion scan``: attack a model over an epsilon sweep and write a report."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.core.errors import ConfigError
from bastion.core.findings import Severity
from bastion.core.redact import redact_argv
from bastion.core.threat import Norm, Threat

if TYPE_CHECKING:
    from bastion.assess.scan import ScanResult

console = Console()

_DEFAULT_EPS = {
    Norm.LINF: (0.05, 0.1, 0.2, 0.3),
    Norm.L2: (0.05, 0.1, 0.2, 0.3),
    Norm.L0: (1, 2, 4, 8),
}
_SEV_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what} is empty")
    return values


def _headers(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            # never echo the item: it is most likely the secret itself
            raise ConfigError("a header looks like 'Name: value'; got one without the 'Name:' part")
        out[name.strip()] = value.strip()
    return out


def _default_eps(norm: Norm, bounds: tuple[float, float], dims: int) -> tuple[float, ...]:
    """A sweep that means the same on any data: shares of the input range (Linf), of the
    range times the root of the dimension (L2), or numbers of features (L0)."""
    span = bounds[1] - bounds[0]
    rel = _DEFAULT_EPS[norm]
    if norm is Norm.LINF:
        return tuple(round(r * span, 6) for r in rel)
    if norm is Norm.L2:
        return tuple(round(r * span * dims**0.5, 4) for r in rel)
    return tuple(float(min(int(r), dims)) for r in rel)


def scan(
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Model to attack: 'demo' (default), a demo name, a .pt/.onnx/"
            ".skops/.joblib file, or an http(s) predict URL.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Data to attack with: digits, breast-cancer, fraud, mnist, a .npz "
            "(arrays x, y), a .csv with a label column, or an image folder.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path(
        "bastion-report"
    ),
    norm: Annotated[
        str | None, typer.Option(help="Perturbation norm: linf (default), l2 or l0.")
    ] = None,
    eps: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated epsilons (default: 5%, 10%, 20%, 30% of the input range)."
        ),
    ] = None,
    samples: Annotated[
        int | None, typer.Option(help="Test inputs to attack (default 200).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and attacks.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    fmt: Annotated[
        str, typer.Option("--format", help="Report formats: html, json or both.")
    ] = "html,json",
    attacks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated attack names (default: every one the target's access allows)."
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="For a state-dict .pt file: the architecture, as package.module:factory."
        ),
    ] = None,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust", help="Load pickles and untrusted skops types: only for files you made."
        ),
    ] = False,
    output_kind: Annotated[
        str | None, typer.Option(help="What the model returns: logits, probabilities or labels.")
    ] = None,
    query_budget: Annotated[
        int | None, typer.Option(help="Most queries the target may answer in this scan.")
    ] = None,
    max_queries: Annotated[
        int | None, typer.Option(help="Most queries per input for black-box attacks.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Steps of iterative gradient attacks.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            help="HTTP header for a URL target, 'Name: value' (repeatable); never written out."
        ),
    ] = None,
    label_column: Annotated[str, typer.Option(help="Label column of a CSV.")] = "label",
    bounds: Annotated[
        str | None, typer.Option(help="Input bounds 'low,high' for your data.")
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="Number of classes, if not all appear.")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(
            help="An assessment plan from 'bastion threats model': it sets the attacks, norm, "
            "epsilons, samples and query budgets."
        ),
    ] = None,
    asset: Annotated[
        str | None, typer.Option(help="With --plan: scan only this model asset's assessment.")
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            help="Exit with status 1 when a finding is at least this severe (critical, high, "
            "medium, low): a gate for CI."
        ),
    ] = None,
) -> None:
    """Attack a model over an epsilon sweep and write report.html and report.json."""
    from bastion.assess import scan as run_scan
    from bastion.assess.plan import scan_plan
    from bastion.assess.specs import load_target_and_data
    from bastion.report import write_html, write_json
    from bastion.threats.plan import load_plan

    if plan is not None:
        given = [
            flag
            for flag, value in (
                ("--norm", norm),
                ("--eps", eps),
                ("--attacks", attacks),
                ("--samples", samples),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(f"--plan sets {', '.join(given)}; give one or the other")
    elif asset is not None:
        raise ConfigError("--asset chooses among a plan's assessments: give --plan too")
    norm_value = Norm.parse(norm or "linf")
    n_samples = 200 if samples is None else samples
    formats = {f.strip().lower() for f in fmt.split(",") if f.strip()}
    if not formats or not formats <= {"html", "json"}:
        raise ConfigError(f"--format takes html, json or html,json; got {fmt!r}")
    if n_samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {n_samples}")
    threshold = None
    if fail_on is not None:
        try:
            threshold = Severity(fail_on.lower())
        except ValueError:
            raise ConfigError(
                f"--fail-on takes critical, high, medium or low; got {fail_on!r}"
            ) from None
    bounds_value = None
    if bounds is not None:
        pair = _floats(bounds, "--bounds")
        if len(pair) != 2:
            raise ConfigError(f"--bounds takes two numbers 'low,high', got {bounds!r}")
        bounds_value = (pair[0], pair[1])
    params: dict[str, dict[str, Any]] = {}
    if max_queries is not None:
        params["square"] = {"max_queries": max_queries}
    if steps is not None:
        params["pgd"] = {"steps": steps}
    attack_names = [a.strip() for a in attacks.split(",") if a.strip()] if attacks else None
    assessment = load_plan(plan) if plan is not None else None

    with _progress() as bar:
        task = bar.add_task("loading the target", total=None)

        def trained(done: int, total: int) -> None:
            bar.update(task, description="training the demo model", completed=done, total=total)

        def step(label: str, done: int, total: int) -> None:
            bar.update(task, description=f"attacking: {label}", completed=done, total=total)

        tgt, dataset = load_target_and_data(
            target,
            data,
            arch=arch,
            trust=trust,
            device=device,
            output_kind=output_kind,
            query_budget=query_budget,
            headers=_headers(header or []),
            label_column=label_column,
            bounds=bounds_value,
            num_classes=num_classes,
            progress=trained,
        )
        bar.update(task, description="attacking", completed=0, total=None)
        runs: list[tuple[str, ScanResult]] = []
        if assessment is not None:
            for item, result in scan_plan(
                tgt, dataset, assessment, asset=asset, seed=seed, progress=step
            ):
                runs.append((item.asset, result))
        else:
            dims = math.prod(dataset.input_shape)
            epsilons = (
                _floats(eps, "--eps") if eps else _default_eps(norm_value, dataset.bounds, dims)
            )
            threat = Threat(norm=norm_value, epsilons=tuple(sorted(epsilons)), knowledge=tgt.access)
            result = run_scan(
                tgt,
                dataset,
                threat,
                samples=n_samples,
                seed=seed,
                attacks=attack_names,
                attack_params=params,
                progress=step,
            )
            runs.append(("", result))

    command = rerun_command(sys.argv[1:])
    severities: list[Severity] = []
    for name, result in runs:
        folder = out / name if len(runs) > 1 else out
        folder.mkdir(parents=True, exist_ok=True)
        report = write_json(result, folder / "report.json") if "json" in formats else None
        if "html" in formats:
            write_html(result, folder / "report.html", report, command=command)
        if name:
            console.rule(f"assessment of {name}")
        _summary(result, folder, formats)
        severities += [f.severity for f in result.findings]
    if threshold is not None and any(s.rank >= threshold.rank for s in severities):
        console.print(f"[bold red]failing:[/] a finding is {threshold.value} or worse")
        raise typer.Exit(1)


def rerun_command(argv: list[str]) -> str:
    """The command line to rerun this scan, with credentials (header values, URL secrets) out."""
    return " ".join(["bastion", *(shlex.quote(arg) for arg in redact_argv(argv))])


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _summary(result: Any, out: Path, formats: set[str]) -> None:
    t = result.target
    console.print(
        f"[bold]{t['name']}[/] ({t['access']}) on {result.dataset['name']}: "
        f"clean accuracy [bold]{result.clean_accuracy:.1%}[/] on {result.samples} inputs, "
        f"{result.seconds:.1f} s"
    )
    table = Table(title=f"Robust accuracy ({result.threat.norm.value})", title_justify="left")
    table.add_column("epsilon", justify="right")
    table.add_column("robust acc.", justify="right")
    table.add_column("95% CI", justify="right")
    for name in result.attacks:
        table.add_column(f"{name} fooled", justify="right")
    for p in result.sweep:
        lo, hi = p.interval
        by_name = {s.attack: s for s in p.attacks}
        table.add_row(
            f"{p.epsilon:g}",
            f"{p.robust_accuracy:.1%}",
            f"{lo:.1%}-{hi:.1%}",
            *[f"{by_name[n].fooled}/{by_name[n].attacked}" for n in result.attacks],
        )
    console.print(table)
    for f in result.findings:
        style = _SEV_STYLE[f.severity.value]
        console.print(
            f"[{style}]{f.severity.value.upper():>8}[/] {f.title} "
            f"[dim]({', '.join(f.techniques)})[/]"
        )
        console.print(f"         {f.summary}", highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    written = [str(out / f"report.{ext}") for ext in ("html", "json") if ext in formats]
    console.print(f"report: {', '.join(written)}")
