"""``bastion serve`` and ``bastion keys``: the guarded gateway and its API keys.

Nothing of FastAPI, SQLAlchemy or torch is imported until a command runs.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bastion.cli._guard import err_console, user_errors

if TYPE_CHECKING:
    import numpy as np

    from bastion.core.targets.base import Target
    from bastion.data import Dataset
    from bastion.serve.keys import ApiKey, KeyStore
    from bastion.serve.policy import Policy

console = Console(emoji=False)

keys_app = typer.Typer(
    name="keys",
    help="Create, list, revoke and rotate the gateway's API keys.",
    no_args_is_help=True,
)

_POLICY_HELP = "Policy file (YAML or JSON); its 'database' holds the keys."
_DB_HELP = "Database URL of the keys (overrides the policy's): sqlite:///PATH or postgresql://..."


def _say(text: str) -> None:
    err_console.print(text, highlight=False, soft_wrap=True, markup=False)


def _require_serve() -> None:
    from bastion._extras import require

    for module in ("fastapi", "uvicorn", "sqlalchemy", "limits", "prometheus_client"):
        require(module)


def serve(
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Model to serve: a demo name (default: the digits CNN), a .pt/.onnx/.skops "
            "file or an http(s) URL.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", "-d", help="For a model of your own: data giving its shape and bounds."
        ),
    ] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    arch: Annotated[
        str | None, typer.Option(help="For a state-dict .pt file: package.module:factory.")
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Load a pickle-based model file you made.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    output_kind: Annotated[
        str | None, typer.Option(help="What the model returns: logits, probabilities or labels.")
    ] = None,
) -> None:
    """Serve a model behind the gateway: API keys, limits, validation, hardening, audit log."""
    with user_errors():
        from bastion.core.errors import ConfigError

        if not 0 < port < 65536:
            raise ConfigError(f"--port must be 1-65535, got {port}")
        _require_serve()
        from bastion.serve.policy import load_policy

        pol = load_policy(policy)
        from bastion.assess.specs import load_target_and_data
        from bastion.serve.gateway import Gateway
        from bastion.serve.logs import configure_logging
        from bastion.serve.server import serve as run

        _say("loading the model ...")
        tgt, dataset = load_target_and_data(
            target, data, arch=arch, trust=trust, device=device, output_kind=output_kind
        )

        def loader(path: str) -> Target:
            loaded, _ = load_target_and_data(
                path, data, arch=arch, trust=trust, device=device, output_kind=output_kind
            )
            return loaded

        gateway = Gateway(tgt, pol, reference=_reference(dataset, pol), loader=loader)
        if target is not None and Path(target).is_file():
            gateway.version = gateway.versions.register(target, note="bastion serve").version
            _say(f"model version {gateway.version} (bastion incident versions lists them)")
        configure_logging()
        active = gateway.keys.list(include_revoked=False)
        _say(f"serving {tgt.name} ({gateway.output_kind.value}) on http://{host}:{port}/predict")
        if gateway.engine.dialect.name == "sqlite":
            _say(
                "audit log durability: "
                + (
                    "process (rows survive a crash of this process, not of the machine; "
                    "audit.durability: power for that)"
                    if pol.audit.durability == "process"
                    else "power (rows survive a crash of the machine)"
                )
            )
        if not active:
            _say(
                "no API key yet, so every request is refused: "
                "bastion keys create --name NAME" + (f" --policy {policy}" if policy else "")
            )
        run(gateway, host=host, port=port)


def _reference(dataset: Dataset, policy: Policy) -> np.ndarray | None:
    """A seeded sample of the training inputs (the test inputs where there are none)."""
    import numpy as np

    pool = dataset.x_train if len(dataset.x_train) else dataset.x_test
    if not len(pool):
        return None
    rng = np.random.default_rng(0)
    n = min(len(pool), policy.monitoring.reference_size)
    return np.asarray(pool[rng.choice(len(pool), n, replace=False)])


def _store(policy: Path | None, db: str | None) -> KeyStore:
    _require_serve()
    from bastion.serve.keys import KeyStore
    from bastion.serve.policy import load_policy
    from bastion.serve.store import connect

    url = db or load_policy(policy).database
    return KeyStore(connect(url), cache_seconds=0)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _shown(key: ApiKey) -> str:
    scopes = ",".join(sorted(s.value for s in key.scopes))
    return f"{key.name} (id {key.key_id}, scopes {scopes})"


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", "-n", help="Who the key is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help="predict (default), feedback or admin; repeatable."),
    ] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=_DB_HELP)] = None,
) -> None:
    """Create a key. The key is printed once, alone on stdout; only its digest is stored."""
    with user_errors():
        key, secret = _store(policy, db).create(name, scope or ["predict"])
    _say(f"created {_shown(key)}; store it now, it is not shown again:")
    print(secret)  # noqa: T201 - the one place the secret is shown: stdout, for a script to take


@keys_app.command("list")
def keys_list(
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=_DB_HELP)] = None,
) -> None:
    """List the keys: name, id, scopes, created, revoked."""
    from rich.table import Table

    with user_errors():
        keys = _store(policy, db).list()
    table = Table(title=f"{len(keys)} API keys")
    for column in ("name", "id", "scopes", "created", "state"):
        table.add_column(column, no_wrap=column == "id")
    for k in keys:
        state = "active" if k.active else f"revoked {_when(k.revoked_at)}"
        if k.replaced_by:
            state += f" (rotated to {k.replaced_by})"
        table.add_row(
            k.name,
            k.key_id,
            ",".join(sorted(s.value for s in k.scopes)),
            _when(k.created_at),
            state,
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    ref: Annotated[str, typer.Argument(help="The key's name or id.")],
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=_DB_HELP)] = None,
) -> None:
    """Revoke a key: every gateway refuses it from now on."""
    with user_errors():
        key = _store(policy, db).revoke(ref)
    _say(f"revoked {_shown(key)}")


@keys_app.command("rotate")
def keys_rotate(
    ref: Annotated[str, typer.Argument(help="The key's name or id.")],
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=_DB_HELP)] = None,
) -> None:
    """Revoke a key and create its replacement (same name and scopes), printed once."""
    with user_errors():
        key, secret = _store(policy, db).rotate(ref)
    _say(f"rotated to {_shown(key)}; the old key is revoked. The new key:")
    print(secret)  # noqa: T201
