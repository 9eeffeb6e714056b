"""``bastion data``: screen training data for poison, and sign and verify its manifest.

``bastion model``: scan a model for backdoors; inspect a model file before anything loads it;
sign and verify model files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bastion.cli._guard import user_errors

if TYPE_CHECKING:
    import numpy as np

    from bastion.data import Dataset

app = typer.Typer(
    name="data",
    help="Screen training data for poison and label errors; sign and verify data manifests.",
    no_args_is_help=True,
)
model_app = typer.Typer(
    name="model",
    help="Inspect models: scan for backdoors; inspect, sign and verify model files.",
    no_args_is_help=True,
)
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)


def _training(spec: str) -> tuple[Dataset, np.ndarray, np.ndarray]:
    from bastion.data import load_data

    data = load_data(spec)
    x, y = (data.x_train, data.y_train) if len(data.x_train) else (data.x_test, data.y_test)
    return data, x, y


@app.command()
def keygen(
    private: Annotated[Path, typer.Option("--private", help="where to write the private key")],
    public: Annotated[Path, typer.Option("--public", help="where to write the public key")],
) -> None:
    """Make an Ed25519 key pair for signing data manifests (PEM files)."""
    from bastion.data.manifest import generate_keypair

    with user_errors():
        key_id = generate_keypair(private, public)
    console.print(f"key {key_id}: {private} (private, mode 600), {public}", highlight=False)


@app.command()
def sign(
    data: Annotated[str, typer.Option("--data", help="dataset: built-in name, .npz, .csv")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (PEM)")],
    out: Annotated[Path, typer.Option("--out", help="where to write the manifest")],
    source: Annotated[str, typer.Option(help="where the samples came from")] = "",
    labeler: Annotated[str, typer.Option(help="who labelled them")] = "",
) -> None:
    """Write a signed manifest of the data's training samples (hash and label of each)."""
    from bastion.data.manifest import make_manifest, sign_manifest, write_manifest

    with user_errors():
        dataset, x, y = _training(data)
        manifest = make_manifest(
            x,
            y,
            name=dataset.name,
            source=source,
            labeler=labeler,
        )
        write_manifest(sign_manifest(manifest, key), out)
    console.print(f"signed {len(manifest['samples'])} samples -> {out}", highlight=False)


@app.command()
def verify(
    data: Annotated[str, typer.Option("--data", help="dataset: built-in name, .npz, .csv")],
    manifest: Annotated[Path, typer.Option("--manifest", help="the signed manifest")],
    key: Annotated[Path, typer.Option("--key", help="the trusted Ed25519 public key (PEM)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Check the manifest's signature and the data against it; any change is an error."""
    from bastion.data.manifest import read_manifest, verify_manifest

    with user_errors():
        _, x, y = _training(data)
        result = verify_manifest(read_manifest(manifest), key, x, y)
        if as_json:
            typer.echo(json.dumps(result.as_dict()))
        elif result.ok:
            console.print(f"ok: {result.samples} samples match, signed by {result.key_id}")
        result.raise_for_changes()


@app.command()
def scan(
    data: Annotated[str, typer.Option("--data", help="dataset: built-in name, .npz, .csv")],
    model: Annotated[
        str | None, typer.Option("--model", help="a model trained on this data (its activations)")
    ] = None,
    arch: Annotated[str | None, typer.Option(help="architecture of a state-dict model")] = None,
    trust: Annotated[bool, typer.Option(help="allow model files that can run code")] = False,
    out: Annotated[Path, typer.Option("--out", help="report folder")] = Path("bastion-data-report"),
    fmt: Annotated[str, typer.Option("--format", help="report formats")] = "html,json",
) -> None:
    """Screen training data: poison suspects, label errors, and a filtered copy (filtered.npz)."""
    import numpy as np

    from bastion.assess.poisoning import scan_data
    from bastion.core.assessment import Report
    from bastion.core.files import atomic_write
    from bastion.report.base import parse_formats, write_report

    with user_errors():
        formats = parse_formats(fmt)
        dataset, x, y = _training(data)
        target = None
        if model is not None:
            from bastion.assess.specs import load_target_and_data

            target, _ = load_target_and_data(model, data, arch=arch, trust=trust)
        with console.status("screening") as status:
            assessment, kept = scan_data(
                x,
                y,
                dataset.describe(),
                model=target,
                progress=lambda name: status.update(f"screening: {name}"),
            )
        import io

        buffer = io.BytesIO()
        np.savez(buffer, x=x[kept], y=y[kept])
        atomic_write(out / "filtered.npz", buffer.getvalue())
        paths = write_report(Report([assessment], command="bastion data scan"), out, formats)
    console.print(
        f"kept {int(kept.sum())} of {len(kept)} samples -> {out / 'filtered.npz'}", highlight=False
    )
    for p in paths:
        console.print(f"report: {p}", highlight=False)


@model_app.command("backdoor-scan")
def backdoor_scan(
    target: Annotated[str, typer.Option("--target", help="the model (file, URL or demo name)")],
    data: Annotated[str, typer.Option("--data", help="clean data to reverse triggers with")],
    arch: Annotated[str | None, typer.Option(help="architecture of a state-dict model")] = None,
    trust: Annotated[bool, typer.Option(help="allow model files that can run code")] = False,
    steps: Annotated[int, typer.Option(help="Neural Cleanse optimization steps")] = 300,
    samples: Annotated[int, typer.Option(help="clean inputs to use")] = 200,
    out: Annotated[Path, typer.Option("--out", help="report folder")] = Path("bastion-backdoor"),
    fmt: Annotated[str, typer.Option("--format", help="report formats")] = "html,json",
) -> None:
    """Neural Cleanse: per-class anomaly indices, a verdict and the suspected target class.

    Exits 1 when a backdoor is suspected."""
    from bastion.assess.poisoning import backdoor_scan as run_scan
    from bastion.assess.specs import load_target_and_data
    from bastion.core.assessment import Report
    from bastion.report.base import parse_formats, write_report

    with user_errors():
        formats = parse_formats(fmt)
        model, dataset = load_target_and_data(target, data, arch=arch, trust=trust)
        with console.status("reverse-engineering a trigger for every class"):
            assessment = run_scan(model, dataset.x_test[:samples], dataset.describe(), steps=steps)
        paths = write_report(
            Report([assessment], command="bastion model backdoor-scan"), out, formats
        )
    details = assessment.details
    if details["backdoored"]:
        console.print(f"backdoor suspected: target class {details['target_class']}")
    else:
        console.print("no backdoor found")
    for p in paths:
        console.print(f"report: {p}", highlight=False)
    if details["backdoored"]:
        raise SystemExit(1)


@model_app.command("inspect")
def inspect_file(
    path: Annotated[Path, typer.Argument(help="the model file (read as data, never loaded)")],
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    fail_on: Annotated[
        str, typer.Option(help="exit 1 at this level: code (anything runs) or danger")
    ] = "code",
    key: Annotated[
        Path | None, typer.Option("--key", help="also verify its signature with this public key")
    ] = None,
    signature: Annotated[
        Path | None, typer.Option(help="the signature file (default: FILE.sig)")
    ] = None,
) -> None:
    """What loading a model file would run: pickle imports and calls, TorchScript,
    torch.export, ONNX external data, skops types. Nothing is loaded.

    Exits 1 when a finding reaches --fail-on (default: anything that runs code)."""
    from rich.table import Table

    from bastion.cli._guard import add_columns
    from bastion.core.errors import ConfigError
    from bastion.integrity import inspect_model_file, verify_model_file

    with user_errors():
        if fmt not in ("table", "json"):
            raise ConfigError(f"--format is table or json, got {fmt!r}")
        if fail_on not in ("code", "danger"):
            raise ConfigError(f"--fail-on is code or danger, got {fail_on!r}")
        report = inspect_model_file(path)
        check = verify_model_file(path, key, signature) if key is not None else None
    failed = report.fails(fail_on)
    if fmt == "json":
        out = report.as_dict()
        if check is not None:
            out["signature"] = check.as_dict()
        typer.echo(json.dumps(out, indent=1))
    else:
        console.print(
            f"{report.path}: {report.format}, {report.size} bytes, sha256 {report.sha256[:16]}",
            highlight=False,
        )
        if report.findings:
            table = Table(show_lines=False)
            add_columns(table, ("level", "kind", "where", "detail"))
            for f in report.findings:
                table.add_row(f.level, f.kind, f.where, f.detail)
            console.print(table)
        if check is not None:
            console.print(f"signature ok: signed by key {check.key_id}", highlight=False)
        verdict = {
            "safe": "safe to load: it holds numbers only",
            "code": "runs code when loaded: load it only if you trust who made it",
            "danger": "DANGEROUS: loading it would run commands or read files",
        }[report.level]
        console.print(verdict, highlight=False)
    if failed:
        raise SystemExit(1)


@model_app.command("keygen")
def model_keygen(
    private: Annotated[Path, typer.Option("--private", help="where to write the private key")],
    public: Annotated[Path, typer.Option("--public", help="where to write the public key")],
) -> None:
    """Make a P-256 key pair for signing model files (PEM files)."""
    from bastion.integrity import generate_signing_key

    with user_errors():
        key_id = generate_signing_key(private, public)
    console.print(f"key {key_id}: {private} (private, mode 600), {public}", highlight=False)


@model_app.command("sign")
def model_sign(
    path: Annotated[Path, typer.Argument(help="the model file or folder")],
    key: Annotated[Path, typer.Option("--key", help="the private key (PEM, P-256/384/521)")],
    out: Annotated[
        Path | None, typer.Option("--out", help="the signature file (default: FILE.sig)")
    ] = None,
) -> None:
    """Sign a model file with OpenSSF model-signing and a local key (offline)."""
    from bastion.integrity import sign_model_file

    with user_errors():
        written = sign_model_file(path, key, out)
    console.print(f"signed {path} -> {written}", highlight=False)


@model_app.command("verify")
def model_verify(
    path: Annotated[Path, typer.Argument(help="the model file or folder")],
    key: Annotated[Path, typer.Option("--key", help="the trusted public key (PEM)")],
    signature: Annotated[
        Path | None, typer.Option(help="the signature file (default: FILE.sig)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Check a model file against its signature; any change or another key is an error."""
    from bastion.integrity import verify_model_file

    with user_errors():
        check = verify_model_file(path, key, signature)
    if as_json:
        typer.echo(json.dumps(check.as_dict()))
    else:
        console.print(f"ok: {path} signed by key {check.key_id}", highlight=False)
