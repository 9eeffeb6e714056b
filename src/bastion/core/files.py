"""Writing files the one way bastion writes them: atomically, with one documented mode.

Every file bastion writes (reports, threat models, plans, checkpoints) goes through
:func:`atomic_write`: the text lands in a temporary file beside the destination and is renamed
over it, so a crash or Ctrl-C leaves the old file or the new one, never half of one. The mode is
that of any ordinary file the user creates (``0o666`` less the process umask, so ``0o644``
under the usual umask of 022): reports are meant to be shared with a team, and a user who wants
them private sets a stricter umask.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "file_mode", "write_key_pair"]


def file_mode() -> int:
    """The mode bastion gives the files it writes: ``0o666`` less the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, content: str | bytes) -> Path:
    """Write ``content`` to ``path`` so that a crash leaves the old file or the new, never half.

    Text is written as UTF-8. The parent folder is created if missing. Returns the path.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def write_key_pair(
    private_path: str | Path, public_path: str | Path, private: bytes, public: bytes
) -> None:
    """Write a key pair: the private key created new and readable by its owner only (an
    existing file is never overwritten: ConfigError), the public one atomically."""
    from bastion.core.errors import ConfigError

    path = Path(private_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; not overwriting a private key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    atomic_write(public_path, public)
