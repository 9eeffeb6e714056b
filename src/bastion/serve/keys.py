"""API keys: created and shown once, stored only as salted digests, compared in constant time.

A key reads ``bst_<id>_<secret>``. The id (12 hex digits) finds the row; the secret (32 random
bytes) is never stored: the row holds a random salt and ``sha256(salt + secret)``. With that
much entropy in the secret a slow password hash buys nothing, and a fast one keeps the check
cheap on every request. The comparison is :func:`hmac.compare_digest`, and an unknown id costs
the same hashing as a known one, so neither timing nor error text tells a caller which ids
exist.

Scopes: ``predict`` (the model), ``feedback`` (delayed labels for answered requests) and
``admin`` (the admin routes and the metrics). A key has only the scopes it was given; nothing
is allowed by default.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from bastion._extras import require
from bastion.core.errors import ConfigError

require("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from bastion.serve.store import KEYS  # noqa: E402

__all__ = ["ApiKey", "KeyStore", "Scope"]

_PREFIX = "bst"
_KEY_SHAPE = re.compile(r"^bst_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
# what an unknown id is hashed against, so it costs the same as a known one
_DUMMY_SALT = "0" * 32
_DUMMY_DIGEST = hashlib.sha256(b"never a key").hexdigest()


class Scope(str, Enum):
    """What a key may do."""

    PREDICT = "predict"
    ADMIN = "admin"
    FEEDBACK = "feedback"


@dataclass(frozen=True)
class ApiKey:
    """A key's record, never its secret."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    created_at: float
    revoked_at: float | None = None
    replaced_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: Scope) -> bool:
        return self.active and scope in self.scopes


@dataclass(frozen=True)
class _Row:
    key: ApiKey
    salt: str
    digest: str


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("ascii")).hexdigest()


def parse_scopes(values: Iterable[str | Scope]) -> frozenset[Scope]:
    out = set()
    for value in values:
        try:
            out.add(Scope(str(getattr(value, "value", value)).strip().lower()))
        except ValueError:
            raise ConfigError(f"unknown scope {value!r}: use predict, feedback or admin") from None
    if not out:
        raise ConfigError("a key needs at least one scope: predict, feedback or admin")
    return frozenset(out)


class KeyStore:
    """The keys of one gateway database.

    Args:
        engine: from :func:`bastion.serve.store.connect`.
        cache_seconds: how long :meth:`verify` may answer from memory; a key revoked by another
            process (the CLI) is refused at the latest that much later. Revoking through this
            store takes effect at once.
    """

    def __init__(self, engine: sa.Engine, *, cache_seconds: float = 1.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, _Row | None]] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- managing keys
    def create(
        self, name: str, scopes: Iterable[str | Scope] = (Scope.PREDICT,)
    ) -> tuple[ApiKey, str]:
        """A new key and its secret string: show the secret once, it is not kept anywhere."""
        if not _NAME.match(name):
            raise ConfigError(
                f"a key name is 1-100 letters, digits and . _ @ -, starting with a letter or "
                f"digit; got {name!r}"
            )
        allowed = parse_scopes(scopes)
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.select(KEYS.c.key_id).where(KEYS.c.name == name, KEYS.c.revoked_at.is_(None))
            ).first()
            if taken is not None:
                raise ConfigError(f"an active key is already named {name!r}: revoke or rotate it")
            return self._insert(conn, name, allowed)

    def _insert(
        self, conn: sa.Connection, name: str, scopes: frozenset[Scope]
    ) -> tuple[ApiKey, str]:
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        now = time.time()
        conn.execute(
            KEYS.insert().values(
                key_id=key_id,
                name=name,
                scopes=",".join(sorted(s.value for s in scopes)),
                salt=salt,
                digest=_digest(salt, secret),
                created_at=now,
            )
        )
        return ApiKey(key_id, name, scopes, now), f"{_PREFIX}_{key_id}_{secret}"

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        query = sa.select(KEYS).order_by(KEYS.c.created_at)
        if not include_revoked:
            query = query.where(KEYS.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_to_row(r).key for r in conn.execute(query)]

    def find(self, ref: str) -> ApiKey:
        """The active key named ``ref``, or the key whose id is ``ref``."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(KEYS).where(KEYS.c.name == ref, KEYS.c.revoked_at.is_(None))
            ).first()
            if row is None:
                row = conn.execute(sa.select(KEYS).where(KEYS.c.key_id == ref)).first()
        if row is None:
            raise ConfigError(f"no key named or with id {ref!r}")
        return _to_row(row).key

    def revoke(self, ref: str) -> ApiKey:
        """Revoke a key (by name or id): it is refused from now on. Revoking twice is an error."""
        key = self.find(ref)
        if not key.active:
            raise ConfigError(f"key {key.name} ({key.key_id}) is already revoked")
        with self.engine.begin() as conn:
            conn.execute(
                KEYS.update().where(KEYS.c.key_id == key.key_id).values(revoked_at=time.time())
            )
        self._forget(key.key_id)
        return self.find(key.key_id)

    def rotate(self, ref: str) -> tuple[ApiKey, str]:
        """Revoke a key and create its replacement (same name, same scopes) in one step."""
        old = self.find(ref)
        if not old.active:
            raise ConfigError(f"key {old.name} ({old.key_id}) is revoked; create a new one")
        with self.engine.begin() as conn:
            new, secret = self._insert(conn, old.name, old.scopes)
            conn.execute(
                KEYS.update()
                .where(KEYS.c.key_id == old.key_id)
                .values(revoked_at=time.time(), replaced_by=new.key_id)
            )
        self._forget(old.key_id)
        return new, secret

    # ----------------------------------------------------------------- checking keys
    def verify(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None: malformed, unknown, wrong secret or revoked."""
        match = _KEY_SHAPE.match(presented)
        if match is None:
            return None
        key_id, secret = match.groups()
        row = self._lookup(key_id)
        salt, digest = (row.salt, row.digest) if row is not None else (_DUMMY_SALT, _DUMMY_DIGEST)
        same = hmac.compare_digest(_digest(salt, secret), digest)
        if row is None or not same or not row.key.active:
            return None
        return row.key

    def _lookup(self, key_id: str) -> _Row | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(KEYS).where(KEYS.c.key_id == key_id)).first()
        row = _to_row(found) if found is not None else None
        with self._lock:
            if len(self._cache) > 10_000:  # unknown ids must not grow memory without end
                self._cache.clear()
            self._cache[key_id] = (now, row)
        return row

    def _forget(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)


def _to_row(r: sa.Row[tuple[object, ...]]) -> _Row:
    m = r._mapping
    key = ApiKey(
        key_id=str(m["key_id"]),
        name=str(m["name"]),
        scopes=frozenset(Scope(s) for s in str(m["scopes"]).split(",") if s),
        created_at=float(m["created_at"]),
        revoked_at=None if m["revoked_at"] is None else float(m["revoked_at"]),
        replaced_by=None if m["replaced_by"] is None else str(m["replaced_by"]),
    )
    return _Row(key, str(m["salt"]), str(m["digest"]))
