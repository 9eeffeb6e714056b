"""Registries of attacks and defences, with the metadata every consumer reads.

The CLI, the catalog, reports and the parametrized test over every attack all read these
registries; nothing keeps a second list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bastion.core.errors import ConfigError
from bastion.core.threat import Access, Norm

__all__ = ["ATTACKS", "DEFENCES", "Entry", "Registry", "register_attack", "register_defence"]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered attack or defence and what it is for.

    ``techniques`` are MITRE ATLAS technique ids the entry executes (attacks) or counters
    (defences); the catalog describes each one.
    """

    name: str
    cls: type[Any]
    kind: str
    family: str
    norms: tuple[Norm, ...]
    access: Access
    data_kinds: tuple[str, ...]
    techniques: tuple[str, ...]
    summary: str

    def supports(self, *, norm: Norm | None = None, access: Access | None = None) -> bool:
        """Whether this entry can run under ``norm`` against a target giving ``access``."""
        if norm is not None and self.norms and norm not in self.norms:
            return False
        return access is None or access.allows(self.access)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "norms": [n.value for n in self.norms],
            "access": self.access.value,
            "data_kinds": list(self.data_kinds),
            "techniques": list(self.techniques),
            "summary": self.summary,
        }


class Registry(Generic[T]):
    """A name -> :class:`Entry` map filled by the ``register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        family: str,
        access: Access,
        techniques: tuple[str, ...],
        norms: tuple[Norm, ...] = (),
        data_kinds: tuple[str, ...] = ("image", "tabular"),
    ) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name].cls is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (cls.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(
                name=name,
                cls=cls,
                kind=self.kind,
                family=family,
                norms=tuple(norms),
                access=access,
                data_kinds=tuple(data_kinds),
                techniques=tuple(techniques),
                summary=doc[0] if doc else "",
            )
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Remove an entry (for plugins that are unloaded, and tests)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, **params: Any) -> T:
        """An instance of the entry called ``name`` with ``params``."""
        entry = self.get(name)
        try:
            return entry.cls(**params)  # type: ignore[no-any-return]
        except TypeError as exc:
            raise ConfigError(f"bad parameters for {self.kind} {name!r}: {exc}") from exc

    def select(self, *, norm: Norm | None = None, access: Access | None = None) -> list[Entry]:
        return [e for e in self._entries.values() if e.supports(norm=norm, access=access)]

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)


ATTACKS: Registry[Any] = Registry("attack")
DEFENCES: Registry[Any] = Registry("defence")

register_attack = ATTACKS.register
register_defence = DEFENCES.register
