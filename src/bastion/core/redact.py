"""Keep secrets out of everything bastion writes or shows (placeholder; see trust-http)."""

from __future__ import annotations

import urllib.parse

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """``url`` without its userinfo."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        parts = parts._replace(netloc=f"***@{host}{port}")
    return urllib.parse.urlunsplit(parts)
