"""The guarded serving gateway: any bastion target behind access control, rate limits and
query budgets, input validation, output hardening and a durable audit log.

Needs the ``serve`` extra (``pip install 'bastion-ml[serve]'``). Exports are imported on first
use, so ``import bastion.serve`` itself loads neither FastAPI nor SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._lazy import lazy_getattr

_LAZY = {
    "Answer": "bastion.serve.gateway",
    "ApiKey": "bastion.serve.keys",
    "AuditLog": "bastion.serve.audit",
    "AuditRecord": "bastion.serve.audit",
    "BackgroundServer": "bastion.serve.server",
    "Gateway": "bastion.serve.gateway",
    "KeyStore": "bastion.serve.keys",
    "Limiter": "bastion.serve.ratelimit",
    "Policy": "bastion.serve.policy",
    "Scope": "bastion.serve.keys",
    "connect": "bastion.serve.store",
    "create_app": "bastion.serve.app",
    "load_policy": "bastion.serve.policy",
    "serve": "bastion.serve.server",
}

if TYPE_CHECKING:
    from bastion.serve.app import create_app
    from bastion.serve.audit import AuditLog, AuditRecord
    from bastion.serve.gateway import Answer, Gateway
    from bastion.serve.keys import ApiKey, KeyStore, Scope
    from bastion.serve.policy import Policy, load_policy
    from bastion.serve.ratelimit import Limiter
    from bastion.serve.server import BackgroundServer, serve
    from bastion.serve.store import connect

__all__ = [
    "Answer",
    "ApiKey",
    "AuditLog",
    "AuditRecord",
    "BackgroundServer",
    "Gateway",
    "KeyStore",
    "Limiter",
    "Policy",
    "Scope",
    "connect",
    "create_app",
    "load_policy",
    "serve",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
