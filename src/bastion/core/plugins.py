"""The one loader of plugins: bastion's own attacks, defences, targets and renderers, and those
of installed packages.

Plugins register themselves when their module is imported. :func:`load_plugins` imports, once:

1. every module of bastion's plugin packages (``bastion.loaders``, ``bastion.attacks``,
   ``bastion.defences``, ``bastion.report``), found by walking the packages, so a new
   attack is one new file and nothing else;
2. every entry point of the group ``bastion.plugins`` of installed distributions (a
   third-party package declares ``[project.entry-points."bastion.plugins"] name = "module"``);
3. the modules named in the ``BASTION_PLUGINS`` environment variable (comma-separated), for
   a plugin that is not packaged.

A plugin that fails to import is reported by :func:`plugin_errors` and named in a warning; it
never stops the rest from loading.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import threading
import warnings
from importlib.metadata import entry_points

__all__ = [
    "BUILTIN_PACKAGES",
    "ENTRY_POINT_GROUP",
    "load_package",
    "load_plugins",
    "plugin_errors",
]

ENTRY_POINT_GROUP = "bastion.plugins"
BUILTIN_PACKAGES = ("bastion.loaders", "bastion.attacks", "bastion.defences", "bastion.report")

_log = logging.getLogger(__name__)
_lock = threading.RLock()
_loaded: set[str] = set()
_errors: dict[str, str] = {}
_loading = threading.local()


def _import(name: str, origin: str) -> None:
    if name in _loaded:
        return
    try:
        importlib.import_module(name)
    except Exception as exc:  # a broken plugin must not take bastion down with it
        _errors[name] = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"plugin {name} ({origin}) failed to load: {exc}", stacklevel=3)
        return
    _loaded.add(name)


def _walk(package: str) -> list[str]:
    module = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(module.__path__, prefix=package + "."):
        leaf = info.name.rsplit(".", 1)[-1]
        if not leaf.startswith("_") or leaf == "__init__":
            names.append(info.name)
    return names


def load_plugins(*, reload: bool = False) -> None:
    """Import every plugin module once (again with ``reload=True``: new ones are picked up)."""
    if getattr(_loading, "active", False):
        return  # a plugin module asking the registry while it is being imported
    with _lock:
        _loading.active = True
        try:
            _load(reload)
        finally:
            _loading.active = False


def _load(reload: bool) -> None:
    if reload:
        _loaded.clear()
        _errors.clear()
    elif "__all__" in _loaded:
        return
    for package in BUILTIN_PACKAGES:
        for name in _walk(package):
            _import(name, "bastion")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _import(
            ep.value.partition(":")[0],
            f"entry point {ep.name} of {ep.dist.name if ep.dist else '?'}",
        )
    for name in os.environ.get("BASTION_PLUGINS", "").split(","):
        if name.strip():
            _import(name.strip(), "BASTION_PLUGINS")
    _loaded.add("__all__")
    _log.debug("plugins loaded: %d modules, %d failed", len(_loaded) - 1, len(_errors))


def load_package(package: str) -> None:
    """Import one of bastion's plugin packages only (the report formats, say): cheaper than
    :func:`load_plugins` when a command needs to check a name before loading torch."""
    with _lock:
        for name in _walk(package):
            _import(name, "bastion")


def plugin_errors() -> dict[str, str]:
    """Plugin modules that failed to import, with the error each raised."""
    load_plugins()
    return dict(_errors)
