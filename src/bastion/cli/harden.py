"""``bastion harden``: make a model more robust, and show by how much.

The command parses, loads and calls :func:`bastion.assess.hardening.harden`; it writes the
hardened model in a safe format (safetensors weights and a JSON description, nothing that
unpickles) and the before/after report.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bastion.core.errors import ConfigError

console = Console(emoji=False)

_CHECKPOINT = ".bastion-harden-checkpoint.pt"


def harden(
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="A demo name or a PyTorch model file (default: the built-in demo, digits-cnn).",
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Data to train and evaluate on (.npz or .csv).")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="pgd-at, trades, fast-at, n-fgsm, distill, smoothing, squeeze, median, jpeg or "
            "resize-pad; "
            "parameters as 'name:param=value,...', e.g. trades:beta=3,epochs=20.",
        ),
    ] = "pgd-at",
    eps: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated epsilons to evaluate at; adversarial training uses the "
            "largest (default: 10% and 20% of the input range, Linf)."
        ),
    ] = None,
    norm: Annotated[str, typer.Option(help="linf (default) or l2.")] = "linf",
    budget: Annotated[
        float | None,
        typer.Option(help="Minutes the whole run may take: the recipe is shrunk to fit."),
    ] = None,
    preset: Annotated[
        str, typer.Option(help="The evaluation before and after: quick, standard or thorough.")
    ] = "standard",
    samples: Annotated[int, typer.Option(help="Test inputs to evaluate on.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of training and evaluation.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for the model and the report.")] = Path(
        "bastion-harden"
    ),
    fmt: Annotated[
        str, typer.Option("--format", help="Report formats, comma-separated: html, json, md.")
    ] = "html,json",
    arch: Annotated[
        str | None,
        typer.Option(help="For a state-dict .pt file: the architecture, package.module:factory."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    constraints: Annotated[
        Path | None,
        typer.Option(
            help="Tabular data: a constraints file (immutable, stepped features, ranges) that "
            "adversarial training's perturbations respect."
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart", help="Discard the checkpoint of an interrupted run instead of resuming."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the recipe and its cost, and stop.")
    ] = False,
) -> None:
    """Harden a model (adversarial training, distillation or an input transformation), then
    evaluate it before and after and write the hardened model and a report.

    An interrupted run resumes from its last finished epoch when run again with the same
    arguments.
    """
    from bastion.cli._guard import user_errors

    with user_errors():
        _harden(
            target,
            data,
            method,
            eps,
            norm,
            budget,
            preset,
            samples,
            seed,
            out,
            fmt,
            arch,
            device,
            constraints,
            restart,
            dry_run,
        )


def _harden(
    target: str | None,
    data: str | None,
    method: str,
    eps: str | None,
    norm: str,
    budget: float | None,
    preset: str,
    samples: int,
    seed: int,
    out: Path,
    fmt: str,
    arch: str | None,
    device: str,
    constraints: Path | None,
    restart: bool,
    dry_run: bool,
) -> None:
    from bastion.assess.evaluate import PRESETS
    from bastion.cli.scan import _floats, _progress, rerun_command
    from bastion.report.base import parse_formats

    # ---- cheap checks first: a typo costs a fraction of a second
    if preset not in PRESETS:
        raise ConfigError(f"--preset takes {', '.join(PRESETS)}; got {preset!r}")
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {samples}")
    epsilons = _floats(eps, "--eps") if eps is not None else None
    formats = parse_formats(fmt)
    rules = None
    if constraints is not None:
        from bastion.core.constraints import Constraints

        rules = Constraints.load(constraints)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")

    from bastion.assess.hardening import harden as run
    from bastion.assess.specs import load_target_and_data
    from bastion.core.assessment import Report
    from bastion.report import write_report

    checkpoint = out / _CHECKPOINT
    if restart:
        checkpoint.unlink(missing_ok=True)
    elif checkpoint.is_file():
        console.print(f"resuming the interrupted training in {checkpoint}", highlight=False)
    with _progress() as bar:
        task = bar.add_task("loading the target", total=None)

        def step(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        tgt, dataset = load_target_and_data(
            target,
            data,
            arch=arch,
            device=device,
            progress=lambda d, t: step("training the demo model", d, t),
        )

        def said(recipe: Any) -> None:
            console.print(f"recipe: {recipe.describe()}", highlight=False)
            if dry_run:
                raise typer.Exit(0)
            bar.update(task, description="training", completed=0, total=None)

        try:
            result = run(
                tgt,
                dataset,
                method,
                epsilons=epsilons,
                norm=norm,
                preset=preset,
                samples=samples,
                seed=seed,
                budget_minutes=budget,
                checkpoint=checkpoint,
                progress=step,
                on_recipe=said,
                constraints=rules,
            )
        except KeyboardInterrupt:
            console.print(
                "[yellow]interrupted:[/] the finished epochs are saved; run the same command "
                "again to resume"
            )
            raise SystemExit(130) from None

    saved = save_model(result, out)
    report = Report([result.assessment], command=rerun_command(sys.argv[1:]))
    try:
        written = write_report(report, out, formats)
    except OSError as exc:
        raise ConfigError(f"cannot write the report into {out}: {exc.strerror}") from None
    checkpoint.unlink(missing_ok=True)
    _summary(result.assessment)
    console.print(f"model: {', '.join(str(p) for p in saved)}", highlight=False)
    console.print(f"report: {', '.join(str(p) for p in written)}", highlight=False)


def save_model(result: Any, out: Path) -> list[Path]:
    """The hardened model as ``model.safetensors`` (weights only) and ``model.json`` (what it
    is: architecture, input shape, bounds, defences, the weights' SHA-256)."""
    from bastion.core.files import atomic_write
    from bastion.core.targets import TorchTarget
    from bastion.defences import DefendedTarget

    out.mkdir(parents=True, exist_ok=True)
    target = result.target
    defences: list[str] = []
    smoothing = None
    if isinstance(target, DefendedTarget):
        defences = [d.describe() for d in (*target.preprocessors, *target.postprocessors)]
        target = target.inner
    elif hasattr(target, "base") and hasattr(target, "sigma"):
        # a smoothed classifier: the noise-trained base model and its noise level
        smoothing = {"sigma": target.sigma, "n": target.n, "alpha": target.alpha}
        target = target.base
    written: list[Path] = []
    info: dict[str, Any] = {
        "format": "bastion-hardened-model/1",
        "method": result.defence.describe(),  # every parameter, to redo it exactly
        "num_classes": target.num_classes,
        "bounds": list(target.bounds),
        "input_shape": list(target.input_shape or ()),
        "defences": defences,
    }
    if smoothing is not None:
        info["smoothing"] = smoothing
    if isinstance(target, TorchTarget):
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in target.model.state_dict().items()}
        blob = save(state)
        weights = atomic_write(out / "model.safetensors", blob)
        written.append(weights)
        model = target.model
        info["architecture"] = f"{type(model).__module__}:{type(model).__qualname__}"
        info["weights"] = {"file": weights.name, "sha256": hashlib.sha256(blob).hexdigest()}
    written.append(atomic_write(out / "model.json", json.dumps(info, indent=2) + "\n"))
    return written


_LABELS = {"plain_pgd_accuracy": "accuracy under plain PGD only"}


def _summary(assessment: Any) -> None:
    from bastion.report.base import metric_text

    table = Table(title=assessment.title, title_justify="left")
    for col in ("measure", "before", "after"):
        table.add_column(col)
    by_name: dict[tuple[str, Any], dict[str, str]] = {}
    for m in assessment.metrics:
        side = m.at.get("model")
        if side is None:
            continue
        key = (m.name, m.at.get("epsilon"))
        by_name.setdefault(key, {})[side] = metric_text(m)[0]
    for m in assessment.metrics:
        if m.name == "certified_accuracy":
            # the smoothed classifier's certificate, after hardening only
            key = ("certified_accuracy", m.at.get("radius"))
            by_name[key] = {"after": metric_text(m)[0]}
    for (name, eps), sides in by_name.items():
        label = _LABELS.get(name, name.replace("_", " "))
        if name == "certified_accuracy":
            label = f"certified accuracy at L2 radius {eps:g}"
        else:
            label += f" at eps={eps:g}" if eps is not None else ""
        table.add_row(label, sides.get("before", ""), sides.get("after", ""))
    console.print(table)
    for w in assessment.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for f in assessment.findings:
        console.print(f"[bold]{f.severity.value.upper():>8}[/] {f.title}", highlight=False)
