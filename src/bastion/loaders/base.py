"""The target-loader registry and the one trust rule for files that can carry code.

The trust rule: a file format that can run code when it is loaded (a pickle or joblib file, a
TorchScript archive, a ``torch.export`` program, skops types outside its trusted list) loads
only with ``trust=True`` (``--trust``), which says "I made this file". Formats that hold only
numbers (a state dict read with ``weights_only=True`` into an architecture named by ``--arch``,
ONNX) load without it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.core.errors import ConfigError, DataError, TargetError, UntrustedFileError
from bastion.core.plugins import load_plugins
from bastion.core.targets.base import Target
from bastion.core.threat import OutputKind

__all__ = [
    "TARGET_LOADERS",
    "LoaderEntry",
    "LoaderRegistry",
    "TargetSpec",
    "load_target",
    "output_kind",
    "register_loader",
    "require_trust",
]


@dataclass
class TargetSpec:
    """Everything a loader may need: the spec the user typed and the options around it.

    ``num_classes``, ``bounds`` and ``input_shape`` come from the data when there is any.
    """

    source: str
    path: Path | None = None
    num_classes: int | None = None
    bounds: tuple[float, float] = (0.0, 1.0)
    input_shape: tuple[int, ...] | None = None
    arch: str | None = None
    trust: bool = False
    device: str | None = None
    output_kind: str | None = None
    query_budget: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def common(self) -> dict[str, Any]:
        """The keyword arguments every target takes."""
        if self.num_classes is None:
            raise DataError(
                f"a model of your own needs data to attack: give --data ({self.source})"
            )
        return {
            "num_classes": self.num_classes,
            "bounds": self.bounds,
            "input_shape": self.input_shape,
            "query_budget": self.query_budget,
        }


@dataclass(frozen=True)
class LoaderEntry:
    """One kind of target: how it is recognized and loaded."""

    name: str
    load: Callable[[TargetSpec], Target]
    schemes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    carries_code: bool = False
    needs_data: bool = True
    extra: str | None = None
    summary: str = ""


class LoaderRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, LoaderEntry] = {}

    def register(
        self,
        name: str,
        *,
        schemes: tuple[str, ...] = (),
        suffixes: tuple[str, ...] = (),
        names: Callable[[], tuple[str, ...]] | tuple[str, ...] = (),
        carries_code: bool = False,
        needs_data: bool = True,
        extra: str | None = None,
    ) -> Callable[[Callable[[TargetSpec], Target]], Callable[[TargetSpec], Target]]:
        def decorate(fn: Callable[[TargetSpec], Target]) -> Callable[[TargetSpec], Target]:
            doc = (fn.__doc__ or "").strip().splitlines()
            self._entries[name] = LoaderEntry(
                name=name,
                load=fn,
                schemes=schemes,
                suffixes=tuple(s.lower() for s in suffixes),
                names=names() if callable(names) else names,
                carries_code=carries_code,
                needs_data=needs_data,
                extra=extra,
                summary=doc[0] if doc else "",
            )
            return fn

        return decorate

    def __iter__(self) -> Iterator[LoaderEntry]:
        load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def by_name(self, spec: str) -> LoaderEntry | None:
        return next((e for e in self if spec in e.names), None)

    def by_scheme(self, scheme: str) -> LoaderEntry | None:
        return next((e for e in self if scheme in e.schemes), None)

    def by_suffix(self, suffix: str) -> list[LoaderEntry]:
        return [e for e in self if suffix.lower() in e.suffixes]

    def suffixes(self) -> list[str]:
        return sorted({s for e in self for s in e.suffixes})


TARGET_LOADERS = LoaderRegistry()
register_loader = TARGET_LOADERS.register


def require_trust(spec: TargetSpec, what: str, *, alternative: str) -> None:
    """Refuse a file that can carry code unless the user said they trust it."""
    if not spec.trust:
        raise UntrustedFileError(
            f"{spec.source} is {what}, which can run code when loaded; pass --trust if you made "
            f"this file, or {alternative}"
        )


def output_kind(value: str | None, default: OutputKind) -> OutputKind:
    if value is None:
        return default
    try:
        return OutputKind(value)
    except ValueError:
        choices = ", ".join(k.value for k in OutputKind)
        raise ConfigError(f"unknown output kind {value!r}; use one of {choices}") from None


def load_target(spec: TargetSpec) -> Target:
    """The target ``spec.source`` names: a registered name, a URL, or a model file."""
    from bastion.core.redact import redact_url

    named = TARGET_LOADERS.by_name(spec.source)
    if named is not None:
        return named.load(spec)
    parsed = urllib.parse.urlparse(spec.source)
    if parsed.scheme and "://" in spec.source:
        by_scheme = TARGET_LOADERS.by_scheme(parsed.scheme.lower())
        if by_scheme is None:
            known = sorted({s for e in TARGET_LOADERS for s in e.schemes})
            raise TargetError(
                f"no loader for {parsed.scheme}:// targets ({redact_url(spec.source)}); "
                f"known schemes: {', '.join(known)}"
            )
        return by_scheme.load(spec)
    path = Path(spec.source).expanduser()
    names = sorted({n for e in TARGET_LOADERS for n in e.names})
    if path.is_dir():
        raise TargetError(
            f"{spec.source} is a folder; give the model file inside it "
            f"({', '.join(TARGET_LOADERS.suffixes())})"
        )
    if not path.exists():
        raise TargetError(
            f"no model at {spec.source!r} (not a file, a URL, or a demo: {', '.join(names)})"
        )
    candidates = TARGET_LOADERS.by_suffix(path.suffix)
    if not candidates:
        raise TargetError(
            f"{path}: unknown model format {path.suffix or '(no suffix)'!r}; known: "
            f"{', '.join(TARGET_LOADERS.suffixes())}, an http(s) URL or a demo name"
        )
    if len(candidates) > 1:
        both = ", ".join(e.name for e in candidates)
        raise TargetError(f"{path.suffix} files are claimed by several loaders ({both})")
    spec.path = path
    return candidates[0].load(spec)
