"""The gateway's database: API keys and the audit log, in SQLAlchemy.

SQLite by default (WAL journal; ``synchronous=NORMAL`` for the policy's ``durability:
process``: a committed row survives a crash of the process, ``FULL`` for ``power``: also one of
the machine), PostgreSQL by URL
(``postgresql://...`` is driven by psycopg 3). Every table is created on first use. The gateway
only ever inserts into the audit log; keys change through :mod:`bastion.serve.keys`.
"""

from __future__ import annotations

from typing import Any

from bastion._extras import require
from bastion.core.errors import ConfigError

require("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

__all__ = [
    "AUDIT",
    "CONTROLS",
    "EVENTS",
    "FEEDBACK",
    "INCIDENTS",
    "KEYS",
    "METADATA",
    "VERSIONS",
    "connect",
]

METADATA = sa.MetaData()

KEYS = sa.Table(
    "bastion_api_keys",
    METADATA,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("replaced_by", sa.String(32), nullable=True),
)

AUDIT = sa.Table(
    "bastion_audit",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("key_id", sa.String(32), nullable=True, index=True),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("decision", sa.String(64), nullable=False),
    sa.Column("n_inputs", sa.Integer, nullable=False),
    sa.Column("input_digest", sa.String(64), nullable=True),
    sa.Column("verdicts", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("client", sa.String(64), nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    # the model's predicted labels (JSON list), for accuracy once delayed labels arrive
    sa.Column("labels", sa.Text, nullable=True),
)

# switches the CLI or a playbook sets and every gateway replica reads (with a short cache):
# "kill-switch", "quarantine:<key id>", "block:<key id>", "model-version"
CONTROLS = sa.Table(
    "bastion_controls",
    METADATA,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("set_at", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("incident_id", sa.Integer, nullable=True),
)

INCIDENTS = sa.Table(
    "bastion_incidents",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("opened_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("detector", sa.String(100), nullable=False),
    sa.Column("check_name", sa.String(100), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True, index=True),
    sa.Column("techniques", sa.Text, nullable=False),
    sa.Column("signals", sa.Text, nullable=False),
    sa.Column("playbook", sa.String(100), nullable=True),
    sa.Column("evidence", sa.Text, nullable=False),
)

# an incident's timeline: the alert that opened it, acknowledgements, every action taken
EVENTS = sa.Table(
    "bastion_incident_events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

VERSIONS = sa.Table(
    "bastion_model_versions",
    METADATA,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

# delayed labels for answered requests, by request id
FEEDBACK = sa.Table(
    "bastion_feedback",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("correct", sa.Integer, nullable=False),
)


def _normalize(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"not a database URL: {url.split('@')[-1]!r}")
    base = scheme.split("+")[0].lower()
    if base == "postgresql" and "+" not in scheme:
        return f"postgresql+psycopg://{rest}"
    if base not in ("sqlite", "postgresql"):
        raise ConfigError(f"database must be sqlite:/// or postgresql://, got {base!r}")
    return url


def _sqlite_pragmas(durability: str) -> Any:
    synchronous = "FULL" if durability == "power" else "NORMAL"

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        # WAL lets readers (the CLI, an admin) run beside the gateway's writes. In WAL mode
        # NORMAL writes each commit to the WAL before it returns, so the OS holds it and a
        # crash or SIGKILL of the process loses nothing; only an OS crash or a power cut can
        # roll back commits since the last sync. FULL also fsyncs the WAL on every commit.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return on_connect


def connect(url: str, *, connect_timeout: float = 3.0, durability: str = "process") -> sa.Engine:
    """An engine for ``url`` with every bastion table created.

    Connections are checked before use (``pool_pre_ping``), so a database that went away and
    came back is used again without a restart. ``durability`` (``process`` or ``power``, see
    :class:`~bastion.serve.policy.AuditPolicy`) applies to SQLite.
    """
    real = _normalize(url)
    args: dict[str, Any] = {}
    if real.startswith("postgresql"):
        args["connect_timeout"] = max(1, int(connect_timeout))
    else:
        args["timeout"] = connect_timeout
        args["check_same_thread"] = False
    try:
        engine = sa.create_engine(real, pool_pre_ping=True, connect_args=args)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"cannot use database {sa.engine.make_url(real)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        if durability not in ("process", "power"):
            raise ConfigError(f"durability must be 'process' or 'power', got {durability!r}")
        sa.event.listen(engine, "connect", _sqlite_pragmas(durability))
    try:
        METADATA.create_all(engine)
        _add_missing_columns(engine)
        _append_only(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        shown = engine.url.render_as_string(hide_password=True)
        raise ConfigError(f"cannot open database {shown}: {_first_line(exc)}") from None
    return engine


_REFUSAL = "the bastion audit log is append-only"


def _append_only(engine: sa.Engine) -> None:
    """Triggers that make the database refuse to change or delete audit rows.

    A guard against a program (the gateway, a script, a bug) rewriting history, not against
    the database's owner, who can drop a trigger: keep the audit database's owner apart from
    the role the gateway connects as where that matters.
    """
    table = AUDIT.name
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            for event in ("UPDATE", "DELETE"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{event.lower()} BEFORE {event} "
                    f"ON {table} BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
                )
        return
    # PostgreSQL: replicas may start together, so create only what is missing and let a
    # replica that lost the race find it made
    function = f"{table}_append_only"
    statements = {
        function: (
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$"
        ),
        f"{table}_no_change": (
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        ),
        f"{table}_no_truncate": (
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        ),
    }
    for name, ddl in statements.items():
        exists = (
            "SELECT 1 FROM pg_proc WHERE proname = %(n)s "
            "AND pronamespace = current_schema()::regnamespace"
            if name == function
            else "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %(n)s AND c.relnamespace = current_schema()::regnamespace"
        )
        with engine.begin() as conn:
            if conn.exec_driver_sql(exists, {"n": name}).first() is not None:
                continue
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(ddl)
        except sa.exc.DBAPIError:
            with engine.begin() as conn:
                if conn.exec_driver_sql(exists, {"n": name}).first() is None:
                    raise


def _add_missing_columns(engine: sa.Engine) -> None:
    """Add the nullable columns a database made by an earlier bastion lacks (no data moves)."""
    inspector = sa.inspect(engine)
    for table in METADATA.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.execute(
                        sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
