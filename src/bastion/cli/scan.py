"""``bastion scan``: attack a model over an epsilon sweep and write a report.

Every cheap argument is checked before torch, the data or the model load, so a typo costs a
fraction of a second, not a minute.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bastion.core.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress

    from bastion.assess.scan import ScanResult
    from bastion.core.assessment import Assessment
    from bastion.core.constraints import Constraints
    from bastion.core.targets.base import Target
    from bastion.data import Dataset

console = Console(emoji=False)

_SEV_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
_CHECKPOINT = ".bastion-checkpoint.json"


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


def parse_goal(text: str | None) -> Any:
    """``--goal``: ``misclassification``, ``top-k:K`` or ``confidence:P`` as a criterion."""
    from pydantic import ValidationError

    from bastion.core.criteria import (
        ConfidentMisclassification,
        Misclassification,
        TopKMisclassification,
    )

    if text is None:
        return None
    kind, _, arg = text.strip().lower().partition(":")
    try:
        if kind == "misclassification" and not arg:
            return Misclassification()
        if kind == "top-k" and arg:
            return TopKMisclassification(k=int(arg))
        if kind == "confidence" and arg:
            return ConfidentMisclassification(threshold=float(arg))
    except ValidationError as exc:
        raise ConfigError(f"--goal {text}: {exc.errors()[0]['msg']}") from None
    except ValueError:
        raise ConfigError(f"--goal {text}: {arg!r} is not a number") from None
    raise ConfigError(
        f"--goal takes misclassification, top-k:K or confidence:P (0 < P < 1); got {text!r}"
    )


def _missing_path(spec: str) -> bool:
    """Whether ``spec`` names a file that is not there: a name with a folder or a suffix is a
    path; a bare name may be a demo or a built-in set, and a URL is checked when it is used."""
    if "://" in spec or not ("/" in spec or Path(spec).suffix):
        return False
    return not Path(spec).expanduser().exists()


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that cannot hold the reports, before any work is done."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--out {out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {probe} is not writable")
    if out.exists():
        try:
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError as exc:
            raise ConfigError(f"--out {out} is not writable: {exc.strerror}") from None


def inside(out: Path, name: str) -> Path:
    """``out / name``, refused unless it stays inside ``out`` (a plan's asset is user input)."""
    folder = (out / name).resolve()
    if not folder.is_relative_to(out.resolve()) or folder == out.resolve():
        raise ConfigError(f"asset name {name!r} would write outside --out {out}")
    return out / name


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
        str | None, typer.Option(help="Perturbation norm: linf (default), l2, l1 or l0.")
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
        str,
        typer.Option("--format", help="Report formats, comma-separated: html, json, md, sarif."),
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
        int | None,
        typer.Option(help="Most queries per input, for every attack with a max_queries setting."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Steps, for every attack with a steps setting.")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any attack parameter, 'attack.param=value' (repeatable), e.g. pgd.restarts=5.",
        ),
    ] = None,
    defence: Annotated[
        list[str] | None,
        typer.Option(
            "--defence",
            help="Scan the model behind a defence, 'name:param=value,...' (repeatable; "
            "preprocessors first), e.g. squeeze:bits=4 or round:decimals=2.",
        ),
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(
            help="What counts as fooled: misclassification (default), top-k:K (the true label "
            "falls out of the K best) or confidence:P (a wrong label with probability >= P)."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted scan from its checkpoint in --out."),
    ] = False,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Run the robustness evaluation: quick, standard or thorough (one chain of "
            "attacks in AutoAttack's manner, adapted to what the model's checks show)."
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="URL targets: seconds allowed per request, in all.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(help="URL targets: retries of a failed request (default 3).")
    ] = None,
    redirects: Annotated[
        str | None,
        typer.Option(
            help="URL targets: 'refuse' redirects (default) or follow 'same-origin' 307/308."
        ),
    ] = None,
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
    surrogate: Annotated[
        str | None,
        typer.Option(
            help="A model of your own, of the same task (a spec as for --target, loaded under "
            "the same --trust rule): adds the transfer attack, crafted on it."
        ),
    ] = None,
    surrogate_arch: Annotated[
        str | None,
        typer.Option(
            help="For a state-dict --surrogate: its architecture, package.module:factory."
        ),
    ] = None,
    constraints: Annotated[
        Path | None,
        typer.Option(
            help="A constraints file (YAML/JSON: immutable, stepped, one-hot features, ranges, "
            "per-feature epsilons): only attacks that respect it run, and the report lists "
            "what they changed, feature by feature."
        ),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(
            help="Assessments to run, comma-separated: evasion, extraction, membership, "
            "inversion (default: evasion, and membership when --members is given)."
        ),
    ] = None,
    members: Annotated[
        str | None,
        typer.Option(
            help="A sample of the model's training data (same formats as --data): membership "
            "inference tells it apart from --data, the held-out data."
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="A report.json (or its folder) from an earlier scan: compare this scan's "
            "figures with it, write comparison.json and .md, and exit with status 1 when one "
            "got worse beyond noise: a gate for CI."
        ),
    ] = None,
) -> None:
    """Attack a model over an epsilon sweep and write the reports (HTML and JSON by default)."""
    from bastion.core.findings import Severity
    from bastion.core.threat import Norm
    from bastion.report.base import parse_formats

    # ---- every cheap check first: nothing heavy is imported until they pass
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
    if preset is not None and plan is not None:
        raise ConfigError("--plan sets the attacks per assessment; --preset cannot be added")
    if preset is not None and preset not in ("quick", "standard", "thorough"):
        raise ConfigError(f"--preset takes quick, standard or thorough; got {preset!r}")
    norm_value = Norm.parse(norm or "linf")
    n_samples = 200 if samples is None else samples
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
        if not pair[0] < pair[1]:
            raise ConfigError(f"--bounds must be 'low,high' with low < high, got {bounds!r}")
        bounds_value = (pair[0], pair[1])
    epsilons = _floats(eps, "--eps") if eps else None
    for value in epsilons or ():
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"epsilon must be a positive finite number, got {value:g}")
    if query_budget is not None and query_budget < 1:
        raise ConfigError(f"--query-budget must be at least 1, got {query_budget}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {timeout}")
    if redirects is not None and redirects not in ("refuse", "same-origin"):
        raise ConfigError(f"--redirects takes refuse or same-origin, got {redirects!r}")
    if retries is not None and retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {retries}")
    criterion = parse_goal(goal)
    headers = _headers(header or [])
    attack_names = [a.strip() for a in attacks.split(",") if a.strip()] if attacks else None
    check_out_folder(out)
    for flag, spec in (("--target", target), ("--data", data)):
        if spec is not None and _missing_path(spec):
            raise ConfigError(f"{flag} {spec}: no such file or folder")
    # ---- --surrogate and --constraints: checked here, applied once the data is loaded
    if surrogate is not None and _missing_path(surrogate):
        raise ConfigError(f"--surrogate {surrogate}: no such file or folder")
    if surrogate_arch is not None and surrogate is None:
        raise ConfigError("--surrogate-arch describes a --surrogate: give one")
    rules = None
    if constraints is not None:
        from bastion.core.constraints import Constraints

        if plan is not None:
            raise ConfigError("--constraints applies to a scan without --plan")
        rules = Constraints.load(constraints)
    families = _families(family, members is not None)
    if plan is not None and (family is not None or members is not None):
        raise ConfigError("--plan sets the assessments; --family and --members cannot be added")
    if "membership" in families and members is None:
        raise ConfigError("--family membership needs --members: a sample of the training data")
    if members is not None and _missing_path(members):
        raise ConfigError(f"--members {members}: no such file or folder")
    checkpoint = out / _CHECKPOINT
    if resume and not checkpoint.is_file():
        raise ConfigError(f"--resume: no interrupted scan to resume in {out}")

    formats = parse_formats(fmt)
    old_report = None
    if baseline is not None:
        from bastion.assess.compare import load_report

        old_report = load_report(baseline, what="baseline")

    # ---- the registry: settings and defences are checked against it
    from bastion.core.registry import ATTACKS, parse_settings
    from bastion.defences import DefendedTarget, create_defence

    params = parse_settings(setting or [])
    for name, values in params.items():
        ATTACKS.get(name).validate(values)
    # settings of the extraction and membership attacks go to their assessments; the rest
    # (evasion, the universal patch and uap) stay with the evasion scan, which refuses others
    privacy_families = ("extraction", "membership", "recon", "inversion")
    other_params = {n: v for n, v in params.items() if ATTACKS.get(n).family in privacy_families}
    params = {n: v for n, v in params.items() if n not in other_params}
    other_names = [n for n in attack_names or [] if ATTACKS.get(n).family in privacy_families]
    attack_names = [n for n in attack_names or [] if n not in other_names] or None
    # the attacks named (a universal one such as patch, under l0), or those a scan picks
    pool = [ATTACKS.get(n) for n in attack_names] if attack_names else None
    pool = pool or ATTACKS.select(family="evasion")
    if not any(norm_value in e.norms for e in pool):
        offered = sorted({n.value for e in pool for n in e.norms})
        raise ConfigError(
            f"no registered attack runs under {norm_value.value}; choose from {', '.join(offered)}"
        )
    defences = [create_defence(d) for d in defence or []]
    assessment = None
    if plan is not None:
        from bastion.threats.plan import load_plan

        assessment = load_plan(plan)
        for item in assessment.items:
            inside(out, item.asset)
        if baseline is not None and asset is None and len(assessment.items) > 1:
            raise ConfigError(
                f"--baseline compares one report; the plan has {len(assessment.items)} assets: "
                "choose one with --asset"
            )

    from bastion.assess import default_attacks
    from bastion.assess import scan as run_scan
    from bastion.assess.plan import scan_plan
    from bastion.assess.specs import load_target_and_data
    from bastion.core.threat import Threat, default_epsilons

    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if retries is not None:
        options["retries"] = retries
    if redirects is not None:
        options["redirects"] = redirects
    command = rerun_command(sys.argv[1:])
    runs: list[tuple[str, ScanResult]] = []
    also: dict[str, list[Assessment]] = {}
    with _progress() as bar:
        task = bar.add_task("loading the target", total=None)

        def trained(done: int, total: int) -> None:
            bar.update(task, description="training the demo model", completed=done, total=total)

        tgt, dataset = load_target_and_data(
            target,
            data,
            arch=arch,
            trust=trust,
            device=device,
            output_kind=output_kind,
            query_budget=query_budget,
            headers=headers,
            label_column=label_column,
            bounds=bounds_value,
            num_classes=num_classes,
            progress=trained,
            options=options,
        )
        if defences:
            tgt = DefendedTarget(tgt, defences)
        bar.update(task, description="attacking", completed=0, total=None)

        def step(label: str, done: int, total: int) -> None:
            queries = f", {tgt.queries:,} queries" if tgt.access.value != "white-box" else ""
            bar.update(
                task, description=f"attacking: {label}{queries}", completed=done, total=total
            )

        privacy: list[Assessment] = []
        if {"extraction", "membership", "inversion"} & set(families):
            bar.update(task, description="stealing and probing the model", completed=0, total=None)
            privacy = _privacy(
                tgt, dataset, families, members, other_params, seed, label_column, other_names
            )
        if assessment is not None:
            for item, result in scan_plan(
                tgt, dataset, assessment, asset=asset, seed=seed, progress=step
            ):
                runs.append((item.asset, result))
        elif "evasion" in families:
            threat = Threat(
                norm=norm_value,
                epsilons=tuple(
                    sorted(
                        epsilons
                        or default_epsilons(
                            norm_value, dataset.bounds, math.prod(dataset.input_shape)
                        )
                    )
                ),
                knowledge=tgt.access,
                criterion=criterion,
            )
            if preset is not None:
                from bastion.assess.evaluate import evaluate, preset_attacks

                chosen = [name for name, _ in preset_attacks(preset, tgt, threat)]
            else:
                chosen = [e.name for e in default_attacks(tgt, threat)]
            extra: dict[str, dict[str, Any]] = {}
            if surrogate is not None:
                attack_names, extra["transfer"] = _with_surrogate(
                    attack_names or chosen,
                    surrogate,
                    dataset,
                    arch=surrogate_arch,
                    trust=trust,
                    device=device,
                )
            if rules is not None:
                rules = rules.with_columns(dataset.feature_names)
                attack_names, by_rules = _with_constraints(attack_names, rules, tgt, dataset)
                extra.update(by_rules)
            per_attack = _shared_settings(attack_names or chosen, steps, max_queries)
            for name, values in params.items():
                per_attack.setdefault(name, {}).update(values)
            for name, values in extra.items():
                per_attack.setdefault(name, {}).update(values)
            if preset is not None:
                result = evaluate(
                    tgt,
                    dataset,
                    threat,
                    preset=preset,
                    samples=n_samples,
                    seed=seed,
                    attacks=attack_names,
                    attack_params=per_attack,
                    progress=step,
                    checkpoint=checkpoint,
                    resume=resume,
                )
            else:
                result = run_scan(
                    tgt,
                    dataset,
                    threat,
                    samples=n_samples,
                    seed=seed,
                    attacks=attack_names,
                    attack_params=per_attack,
                    progress=step,
                    checkpoint=checkpoint,
                    resume=resume,
                )
            runs.append(("", result))
            if rules is not None:
                from bastion.assess.constrained import constrained_assessment

                bar.update(task, description="attacking: the constrained assessment")
                settings = dict(per_attack.get("constrained-pgd", {}))
                settings.pop("constraints", None)
                also[""] = [
                    constrained_assessment(
                        tgt,
                        dataset,
                        rules,
                        threat,
                        samples=n_samples,
                        seed=seed,
                        attack_params=settings,
                    )
                ]

    from bastion.core.assessment import Report
    from bastion.report import write_report

    failing = False
    interrupted = False
    folder = out
    if not runs:
        report = Report(privacy, command=command)
        try:
            written = write_report(report, out, formats)
        except OSError as exc:
            raise ConfigError(f"cannot write the report into {out}: {exc.strerror}") from None
    for name, result in runs:
        folder = inside(out, name) if len(runs) > 1 else out
        more = also.get(name, [])
        assessments = [result.to_assessment(), *more, *(privacy if name == "" else [])]
        report = Report(assessments, asset=name or None, command=command)
        try:
            written = write_report(report, folder, formats)
        except OSError as exc:
            raise ConfigError(f"cannot write the report into {folder}: {exc.strerror}") from None
        if name:
            console.rule(f"assessment of {name}")
        _summary(result, written if not privacy else [])
        for extra_assessment in more:
            _summary_more(extra_assessment)
        if result.complete and name == "":
            checkpoint.unlink(missing_ok=True)
        interrupted = interrupted or result.interrupted
        if threshold is not None:
            failing = failing or any(f.fails(threshold) for f in result.findings)
    for a in privacy:
        _privacy_summary(a)
        if threshold is not None:
            failing = failing or any(f.fails(threshold) for f in a.findings)
    if privacy:
        console.print(f"report: {', '.join(str(p) for p in written)}", highlight=False)
    regressed = False
    if old_report is not None:
        # one report when a baseline is given: a plan of several assets was refused above
        regressed = _against_baseline(old_report, report, folder)
    if interrupted:
        console.print("[yellow]interrupted:[/] a partial report was written; rerun with --resume")
        raise typer.Exit(130)
    if threshold is not None and failing:
        console.print(
            f"[bold red]failing:[/] a finding is {threshold.value} or worse, or its figure is "
            "unreliable"
        )
    if regressed or (threshold is not None and failing):
        raise typer.Exit(1)


def _against_baseline(old: dict[str, Any], report: Any, folder: Path) -> bool:
    """Compare the new report with the baseline, show the changes beyond noise, write
    comparison.json and .md into ``folder``; whether a figure regressed."""
    from bastion.assess.compare import Comparison, compare_reports
    from bastion.report.json import to_dict

    comparison = compare_reports(old, to_dict(report))
    try:
        written = comparison.write(folder)
    except OSError as exc:
        raise ConfigError(f"cannot write the comparison into {folder}: {exc.strerror}") from None
    rows = comparison.rows(significant_only=True)
    if rows:
        table = Table(title="Changes beyond noise against the baseline", title_justify="left")
        for column in Comparison.COLUMNS:
            table.add_column(column, no_wrap=column != "figure")
        for row in rows:
            style = {"regressed": "red", "improved": "green"}.get(row[-1], "")
            table.add_row(*row, style=style)
        console.print(table)
    console.print(f"against the baseline: {comparison.summary()}", highlight=False, soft_wrap=True)
    console.print(
        f"comparison: {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True
    )
    if comparison.failed:
        worse = comparison.regressions
        first = f"{worse[0].label}: {worse[0].old:.1%} -> {worse[0].new:.1%}"
        if worse[0].unit != "fraction":
            first = f"{worse[0].label}: {worse[0].old:.4g} -> {worse[0].new:.4g}"
        console.print(
            f"[bold red]regressed:[/] {len(worse)} figure(s) worse than the baseline beyond "
            f"noise ({first}{', ...' if len(worse) > 1 else ''})",
            highlight=False,
            soft_wrap=True,
        )
    return comparison.failed


_FAMILIES = ("evasion", "extraction", "membership", "inversion")


def _families(text: str | None, have_members: bool) -> list[str]:
    """``--family``: the assessments to run, each a known family."""
    if text is None:
        return ["evasion", "membership"] if have_members else ["evasion"]
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [n for n in names if n not in _FAMILIES]
    if not names or unknown:
        raise ConfigError(f"--family takes {', '.join(_FAMILIES)} (comma-separated); got {text!r}")
    return list(dict.fromkeys(names))


def _privacy(
    target: Any,
    dataset: Any,
    families: list[str],
    members: str | None,
    params: dict[str, dict[str, Any]],
    seed: int,
    label_column: str,
    chosen: list[str],
) -> list[Any]:
    """The extraction, membership and inversion assessments asked for; ``chosen``: the
    attacks named by --attacks (those of each family replace its defaults)."""
    out = []
    if "extraction" in families:
        from bastion.assess.extraction import extraction_assessment

        names = [n for n in chosen if _family_of(n) == "extraction"] or None
        out.append(
            extraction_assessment(target, dataset, attacks=names, attack_params=params, seed=seed)
        )
    if "membership" in families and members is not None:
        from bastion.assess.membership import membership_assessment
        from bastion.data import load_data

        train = load_data(
            members,
            label_column=label_column,
            bounds=dataset.bounds,
            num_classes=dataset.num_classes,
        )
        from bastion.zoo import cache_dir

        names = [n for n in chosen if _family_of(n) == "membership"] or None
        out.append(
            membership_assessment(
                target,
                train,
                dataset,
                attacks=names,
                attack_params=params,
                seed=seed,
                shadow_cache=cache_dir() / "shadows",
            )
        )
    if "inversion" in families:
        from bastion.assess.inversion import inversion_assessment

        names = [n for n in chosen if _family_of(n) == "inversion"] or None
        rows = None
        if members is not None:
            from bastion.data import load_data

            rows = load_data(
                members,
                label_column=label_column,
                bounds=dataset.bounds,
                num_classes=dataset.num_classes,
            )
        out.append(
            inversion_assessment(
                target, dataset, members=rows, attacks=names, attack_params=params, seed=seed
            )
        )
    return out


def _family_of(name: str) -> str:
    from bastion.core.registry import ATTACKS

    return str(ATTACKS.get(name).family)


def _privacy_summary(a: Any) -> None:
    from bastion.report.base import metric_text

    console.print(f"[bold]{a.title}[/] ({a.seconds:.1f} s)", highlight=False)
    for m in a.metrics:
        shown = ("fidelity", "transfer_rate", "auc", "recognizable", "attribute_accuracy")
        if m.name in shown or (m.name == "tpr" and m.at.get("fpr") == 0.01):
            value, ci = metric_text(m)
            console.print(f"  {m.label}: [bold]{value}[/] {ci}", highlight=False)
    for f in a.findings:
        style = _SEV_STYLE[f.severity.value]
        console.print(f"[{style}]{f.severity.value.upper():>8}[/] {f.title}", highlight=False)
        console.print(f"         ATLAS: {', '.join(f.techniques)}", highlight=False, soft_wrap=True)
        console.print(f"         {f.summary}", highlight=False)
    for w in a.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for lim in a.limits:
        console.print(f"[yellow]limited:[/] {lim}", highlight=False)


def _shared_settings(
    names: list[str], steps: int | None, max_queries: int | None
) -> dict[str, dict[str, Any]]:
    """``--steps`` and ``--max-queries`` for every chosen attack that has such a parameter."""
    from bastion.core.registry import ATTACKS

    out: dict[str, dict[str, Any]] = {}
    for name in names:
        known = ATTACKS.get(name).parameters()
        if steps is not None and "steps" in known:
            out.setdefault(name, {})["steps"] = steps
        if max_queries is not None and "max_queries" in known:
            out.setdefault(name, {})["max_queries"] = max_queries
    return out


def _with_surrogate(
    names: list[str],
    spec: str,
    dataset: Dataset,
    *,
    arch: str | None,
    trust: bool,
    device: str,
) -> tuple[list[str], dict[str, Any]]:
    """``--surrogate``: the model loaded like ``--target`` (same loaders, same trust rule), and
    the transfer attack added to the scan with it."""
    from bastion.loaders import TargetSpec, load_target

    model = load_target(
        TargetSpec(
            source=spec,
            num_classes=dataset.num_classes,
            bounds=dataset.bounds,
            input_shape=dataset.input_shape,
            arch=arch,
            trust=trust,
            device=device,
        )
    )
    return [*(n for n in names if n != "transfer"), "transfer"], {"surrogate": model}


def _with_constraints(
    names: list[str] | None, rules: Constraints, target: Target, dataset: Dataset
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``--constraints``: checked against the data, and given to the attacks that take them;
    an attack that cannot respect them is refused rather than run outside them."""
    import math

    import torch

    from bastion.core.registry import ATTACKS

    if dataset.kind != "tabular":
        raise ConfigError(f"--constraints describes tabular data; {dataset.name} is {dataset.kind}")
    resolved = rules.resolve(math.prod(dataset.input_shape), target.bounds)
    resolved.check_data(torch.from_numpy(dataset.x_test), f"the test rows of {dataset.name}")
    able = [e.name for e in ATTACKS.select(family="evasion") if "constraints" in e.parameters()]
    chosen = names or able
    unable = [n for n in chosen if n not in able]
    if unable:
        raise ConfigError(
            f"--constraints: {', '.join(unable)} cannot respect them; attacks that can: "
            f"{', '.join(able)}"
        )
    return chosen, {n: {"constraints": rules.model_dump(exclude_defaults=True)} for n in chosen}


def _summary_more(assessment: Assessment) -> None:
    """One line per extra assessment's headline figures."""
    console.rule(assessment.title)
    for m in assessment.metrics:
        if m.name in ("recall", "constraint_violations", "robust_accuracy"):
            value = f"{m.value:.1%}" if m.unit == "fraction" else f"{m.value:g} {m.unit}"
            console.print(f"{m.label}: [bold]{value}[/]", highlight=False)
    for f in assessment.findings:
        style = _SEV_STYLE[f.severity.value]
        console.print(f"[{style}]{f.severity.value.upper():>8}[/] {f.title}", highlight=False)
        console.print(f"         {f.summary}", highlight=False)
    for w in assessment.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


def rerun_command(argv: list[str]) -> str:
    """The command line to rerun this scan, with credentials (header values, URL secrets) out."""
    from bastion.core.redact import redact_argv

    return " ".join(["bastion", *(shlex.quote(arg) for arg in redact_argv(argv))])


def _progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True, emoji=False),
        transient=True,
    )


def _summary(result: Any, written: list[Path]) -> None:
    t = result.target
    console.print(
        f"[bold]{t['name']}[/] ({t['access']}) on {result.dataset['name']}: "
        f"clean accuracy [bold]{result.clean_accuracy:.1%}[/] on {result.samples} inputs, "
        f"{result.seconds:.1f} s",
        highlight=False,
    )
    goal = result.threat.goal.describe()
    if goal != "misclassification":
        console.print(f"success criterion: {goal} (accuracy counts inputs not yet fooled by it)")
    table = Table(title=f"Robust accuracy ({result.threat.norm.value})", title_justify="left")
    table.add_column("eps", justify="right")
    table.add_column("robust", justify="right")
    table.add_column("95% CI", justify="right", no_wrap=True)
    for name in result.attacks:
        table.add_column(f"{name}", justify="right", no_wrap=True)
    for p in result.sweep:
        lo, hi = p.interval
        by_name = {s.attack: s for s in p.attacks}
        table.add_row(
            f"{p.epsilon:g}",
            f"{p.robust_accuracy:.1%}" + ("*" if p.limited else ""),
            f"{lo:.1%}-{hi:.1%}",
            *[f"{by_name[n].fooled}/{by_name[n].attacked}" for n in result.attacks],
        )
    console.print(table)
    console.print("[dim]attack columns: inputs fooled / inputs attacked[/]")
    for f in result.findings:
        style = _SEV_STYLE[f.severity.value]
        console.print(f"[{style}]{f.severity.value.upper():>8}[/] {f.title}", highlight=False)
        console.print(f"         ATLAS: {', '.join(f.techniques)}", highlight=False, soft_wrap=True)
        console.print(f"         {f.summary}", highlight=False)
        if f.unreliable:
            console.print(f"         [bold yellow]unreliable:[/] {f.unreliable}", highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for lim in result.limits:
        console.print(f"[yellow]limited:[/] {lim}", highlight=False)
    if written:
        console.print(
            f"report: {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True
        )
