"""``bastion patch``: train an adversarial patch on the training images, measure it on held-out
ones at random placements, and write a report that shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bastion.cli.scan import check_out_folder, rerun_command
from bastion.core.errors import ConfigError

console = Console(emoji=False)


def patch(
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="Model: a demo name (default digits-cnn) or a file."),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Image data (default: the demo's).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path(
        "bastion-patch"
    ),
    size: Annotated[float, typer.Option(help="The patch's share of the image's area.")] = 0.1,
    target_class: Annotated[
        int | None, typer.Option(help="Make the model say this class (default: any error).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 200,
    train_samples: Annotated[int, typer.Option(help="Training images.")] = 500,
    samples: Annotated[int, typer.Option(help="Held-out images to measure on.")] = 300,
    placements: Annotated[int, typer.Option(help="Random placements per held-out image.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for sampling, training and placement.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    arch: Annotated[
        str | None, typer.Option(help="For a state-dict .pt file: package.module:factory.")
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Load files that can carry code: only your own.")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="Report formats, comma-separated: html, json, md.")
    ] = "html,json",
) -> None:
    """Train an adversarial patch and measure where it lands (a report with the patch)."""
    import sys

    from bastion.report.base import parse_formats

    if not 0 < size < 1:
        raise ConfigError(f"--size is a share of the image's area, in (0, 1); got {size}")
    for flag, value in (
        ("--steps", steps),
        ("--train-samples", train_samples),
        ("--samples", samples),
        ("--placements", placements),
    ):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    formats = parse_formats(fmt)
    check_out_folder(out)

    from bastion.assess.physical import patch_assessment
    from bastion.assess.specs import load_target_and_data
    from bastion.core.assessment import Report
    from bastion.report import write_report

    tgt, dataset = load_target_and_data(target, data, arch=arch, trust=trust, device=device)
    if target_class is not None and not 0 <= target_class < tgt.num_classes:
        raise ConfigError(
            f"--target-class {target_class} is not a class of {tgt.name} (0..{tgt.num_classes - 1})"
        )
    with console.status("training the patch"):
        assessment = patch_assessment(
            tgt,
            dataset,
            size=size,
            target_class=target_class,
            train_samples=train_samples,
            test_samples=samples,
            placements=placements,
            seed=seed,
            attack_params={"steps": steps},
        )
    report = Report([assessment], command=rerun_command(sys.argv[1:]))
    try:
        written = write_report(report, out, formats)
    except OSError as exc:
        raise ConfigError(f"cannot write the report into {out}: {exc.strerror}") from None
    rate = assessment.metric("patch_success_rate")
    control = assessment.metric("random_patch_success_rate")
    share = assessment.metric("patch_share").value
    console.print(
        f"[bold]{tgt.name}[/] on {dataset.name}: a patch of {share:.1%} of the image succeeds on "
        f"[bold]{rate.value:.1%}[/] of held-out placements (random patch: {control.value:.1%})",
        highlight=False,
    )
    for f in assessment.findings:
        console.print(f"{f.severity.value.upper():>8} {f.title}", highlight=False)
        console.print(f"         ATLAS: {', '.join(f.techniques)}", highlight=False)
    console.print(f"report: {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)
