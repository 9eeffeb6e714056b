"""Keep credentials out of what bastion shows: target names, error messages, rerun commands.

A predict URL can carry secrets in two places, the userinfo (``https://user:pass@host``) and
the query string (``?api_key=...``); a command line can carry them in ``--header`` values.
Everything here is pure string work and never raises on odd input: redaction runs on the way
to an error message, where a second error would hide the first.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact_argv", "redact_text", "redact_url"]

MASK = "***"
HIDDEN = "<hidden>"

# parameter names that are secrets outright, and fragments that make a name secret-looking
_SECRET_NAMES = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "secret",
        "password",
        "passwd",
        "auth",
        "signature",
        "sig",
    }
)
_SECRET_PARTS = ("token", "secret", "key", "password", "signature", "credential")

# a URL in free text: a scheme, ``://``, then anything up to whitespace or a quote
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# punctuation that ends a sentence rather than a URL ("see https://host/p.")
_TRAILING = ".,;:!?)]}"
_HEADER_FLAGS = ("--header", "-H")


def _is_secret_name(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def _redact_pairs(text: str) -> str:
    """Mask the value of every secret-looking ``name=value`` in a query or fragment.

    Works on the raw text, pair by pair, so the rest keeps its exact encoding.
    """
    if not text:
        return text
    pairs = []
    for pair in re.split(r"([&;])", text):
        name, sep, _ = pair.partition("=")
        if sep and _is_secret_name(urllib.parse.unquote_plus(name)):
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "".join(pairs)


def _redact_netloc(netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    return f"{MASK}@{hostport}" if at and userinfo else netloc


def redact_url(url: str) -> str:
    """``url`` with its userinfo shown as ``***@`` and secret query values as ``***``.

    The scheme, host, port and path stay, so the result still says which endpoint was meant.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        # unparseable (a bad IPv6 literal, say): still drop anything that looks like userinfo
        return re.sub(r"(?<=://)[^/?#\s]*@", f"{MASK}@", url)
    return urllib.parse.urlunsplit(
        (
            parts.scheme,
            _redact_netloc(parts.netloc),
            parts.path,
            _redact_pairs(parts.query),
            _redact_pairs(parts.fragment),
        )
    )


def _redact_match(match: re.Match[str]) -> str:
    found = match.group(0)
    stripped = found.rstrip(_TRAILING)
    return redact_url(stripped) + found[len(stripped) :]


def redact_text(text: str) -> str:
    """``text`` (an exception message, a log line) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(_redact_match, text)


def redact_argv(argv: list[str]) -> list[str]:
    """A command line safe to show: URLs redacted, header values replaced by ``<hidden>``.

    Covers ``--header VALUE`` and ``--header=VALUE`` (a header is usually an API key), and a
    URL anywhere in an argument (``--target https://user:pass@host/p``).
    """
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(HIDDEN)
            hide_next = False
        elif arg in _HEADER_FLAGS:
            shown.append(arg)
            hide_next = True
        elif arg.startswith(tuple(f"{flag}=" for flag in _HEADER_FLAGS)):
            shown.append(f"{arg.partition('=')[0]}={HIDDEN}")
        else:
            shown.append(redact_text(arg))
    return shown
