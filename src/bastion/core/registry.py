"""Registries of plugins: attacks, defences, target loaders and report renderers.

A registry entry is the whole contract of a plugin: everything the rest of bastion needs to
know about it lives there, and nothing keeps a second list. The scan picks attacks and their
order from the entries; the CLI sets any parameter through the entry's typed config; the
catalog derives which attacks execute a technique from the entries; the tests parametrize over
the entries with each one's ``fast`` settings.

Entries are filled when plugin modules are imported. :func:`bastion.core.plugins.load_plugins`
is the one place that imports them (bastion's own and those of installed packages); every
registry calls it before it is read, so no caller has to.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bastion.core.errors import AccessError, ConfigError
from bastion.core.plugins import load_plugins
from bastion.core.threat import Access, Norm

__all__ = [
    "ATTACKS",
    "DEFENCES",
    "DEFENCE_KINDS",
    "Entry",
    "Registry",
    "config_model",
    "parse_settings",
    "register_attack",
    "register_defence",
]

T = TypeVar("T")

#: the kinds of defence, by where they act
DEFENCE_KINDS = ("preprocessor", "postprocessor", "trainer", "detector", "sanitizer")


def config_model(cls: type[Any]) -> type[BaseModel]:
    """A pydantic model of ``cls``'s keyword arguments: their types and defaults.

    Hyperparameters are declared once, as the constructor's typed keyword arguments (the
    scikit-learn convention); this derives the validated config from them, so a string from
    the command line (``"100"``) becomes the declared type (``100``) or a one-line error.
    Built once per class.
    """
    built = _CONFIGS.get(cls)
    if built is None:
        built = _CONFIGS[cls] = _build_config(cls)
    return built


_CONFIGS: dict[type[Any], type[BaseModel]] = {}


def _build_config(cls: type[Any]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    # a constructor that passes **kwargs on to its parent's takes the parent's parameters
    # too: follow the classes in order for as long as each one does
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # an annotation that cannot be resolved: fall back to no types
            hints = {}
        more = False
        for name, param in inspect.signature(init).parameters.items():
            if param.kind is param.VAR_KEYWORD:
                more = True
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields.setdefault(name, (hints.get(name, Any), default))
        if not more:
            break
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{cls.__name__}Config",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


@dataclass(frozen=True)
class Entry:
    """One registered plugin and what it is for.

    Attributes:
        name: the registry name (``pgd``), unique within its registry.
        cls: the class (or factory) that makes an instance.
        kind: ``attack`` or ``defence``.
        family: what it attacks or defends against: ``evasion``, ``poisoning``,
            ``extraction``, ``membership``, ``inversion``, ...
        access: the access it needs of the target (attacks), or ``white-box`` for a
            defence that needs the model itself.
        norms: the perturbation norms it supports (empty: not a perturbation attack).
        data_kinds: the kinds of data it works on (``image``, ``tabular``).
        techniques: ATLAS technique ids it executes (attacks) or counters (defences).
        mitigations: ATLAS (``AML.M....``) or AIDEFEND (``AID-...``) ids it implements.
        cost: its rank in an ensemble: cheaper attacks run first.
        defaults: the parameters a scan uses unless told otherwise.
        fast: small settings for the parametrized tests over every entry.
        in_scan: whether a scan that names no attacks runs it (False for attacks that a
            cheaper default already stands for, or that belong to the evaluation presets).
        requires: parameters without which a scan does not pick it by default (a transfer
            attack needs a surrogate): it runs when named, or when the scan is given them.
        defence_kind: for defences, one of :data:`DEFENCE_KINDS`.
        source: the module that registered it (a third-party plugin shows its package).
    """

    name: str
    cls: type[Any]
    kind: str
    family: str
    access: Access
    norms: tuple[Norm, ...] = ()
    data_kinds: tuple[str, ...] = ("image", "tabular")
    techniques: tuple[str, ...] = ()
    mitigations: tuple[str, ...] = ()
    cost: int = 50
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fast: Mapping[str, Any] = field(default_factory=dict)
    in_scan: bool = True
    requires: tuple[str, ...] = ()
    defence_kind: str | None = None
    summary: str = ""
    source: str = ""

    @property
    def config(self) -> type[BaseModel]:
        """The typed, validated config of this entry's parameters."""
        return config_model(self.cls)

    def parameters(self) -> dict[str, Any]:
        """Each parameter's default (``...`` for a required one)."""
        return {
            name: (f.default if not f.is_required() else ...)
            for name, f in self.config.model_fields.items()
        }

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked and converted to their declared types; ConfigError otherwise."""
        try:
            model = self.config.model_validate(dict(params))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(all)'}: {err['msg']}"
                for err in exc.errors()[:3]
            )
            raise ConfigError(f"bad parameters for {self.kind} {self.name!r}: {problems}") from None
        given = set(params)
        return {k: v for k, v in model.model_dump().items() if k in given}

    def supports(self, *, norm: Norm | None = None, access: Access | None = None) -> bool:
        """Whether this entry can run under ``norm`` against a target giving ``access``."""
        if norm is not None and self.norms and norm not in self.norms:
            return False
        return access is None or access.allows(self.access)

    def require(self, *, access: Access, norm: Norm | None, target: str = "the target") -> None:
        """Raise a one-line error unless this entry runs with ``access`` under ``norm``."""
        if not access.allows(self.access):
            raise AccessError(
                f"{self.name} needs {self.access.value} access; {target} gives {access.value}"
            )
        if norm is not None and self.norms and norm not in self.norms:
            supported = ", ".join(n.value for n in self.norms)
            raise ConfigError(f"{self.name} supports {supported}, not {norm.value}")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "norms": [n.value for n in self.norms],
            "access": self.access.value,
            "data_kinds": list(self.data_kinds),
            "techniques": list(self.techniques),
            "mitigations": list(self.mitigations),
            "cost": self.cost,
            "defaults": dict(self.defaults),
            "in_scan": self.in_scan,
            "summary": self.summary,
        }
        if self.requires:
            out["requires"] = list(self.requires)
        if self.defence_kind is not None:
            out["defence_kind"] = self.defence_kind
        return out


class Registry(Generic[T]):
    """A name -> :class:`Entry` map filled by the ``register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        #: bumped on every change, so derived views (the catalog's links) know to refresh
        self.version = 0

    def register(
        self,
        name: str,
        *,
        family: str,
        access: Access = Access.LABELS,
        techniques: tuple[str, ...] = (),
        mitigations: tuple[str, ...] = (),
        norms: tuple[Norm, ...] = (),
        data_kinds: tuple[str, ...] = ("image", "tabular"),
        cost: int = 50,
        defaults: Mapping[str, Any] | None = None,
        fast: Mapping[str, Any] | None = None,
        in_scan: bool = True,
        requires: tuple[str, ...] = (),
        defence_kind: str | None = None,
    ) -> Callable[[type[T]], type[T]]:
        """A class decorator adding the class to this registry under ``name``."""
        if self.kind == "defence" and defence_kind not in DEFENCE_KINDS:
            raise ValueError(f"a defence needs defence_kind, one of {', '.join(DEFENCE_KINDS)}")

        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name].cls.__qualname__ != cls.__qualname__:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (cls.__doc__ or "").strip().splitlines()
            entry = Entry(
                name=name,
                cls=cls,
                kind=self.kind,
                family=family,
                access=access,
                norms=tuple(norms),
                data_kinds=tuple(data_kinds),
                techniques=tuple(techniques),
                mitigations=tuple(mitigations),
                cost=cost,
                defaults=dict(defaults or {}),
                fast=dict(fast or {}),
                in_scan=in_scan,
                requires=tuple(requires),
                defence_kind=defence_kind,
                summary=doc[0] if doc else "",
                source=cls.__module__,
            )
            # the declared defaults and fast settings must be valid parameters
            entry.validate(entry.defaults)
            entry.validate(entry.fast)
            unknown = set(entry.requires) - set(entry.parameters())
            if unknown:
                raise ValueError(f"{name} requires {sorted(unknown)}, which it does not take")
            self._entries[name] = entry
            self.version += 1
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Remove an entry (for plugins that are unloaded, and tests)."""
        if self._entries.pop(name, None) is not None:
            self.version += 1

    def get(self, name: str) -> Entry:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, **params: Any) -> T:
        """An instance of the entry called ``name`` with ``params``, validated by its config."""
        entry = self.get(name)
        return entry.cls(**entry.validate(params))  # type: ignore[no-any-return]

    def select(
        self,
        *,
        norm: Norm | None = None,
        access: Access | None = None,
        family: str | None = None,
    ) -> list[Entry]:
        """Entries that run under ``norm`` with ``access`` (and of ``family``), cheapest first."""
        load_plugins()
        chosen = [
            e
            for e in self._entries.values()
            if e.supports(norm=norm, access=access) and (family is None or e.family == family)
        ]
        return sorted(chosen, key=lambda e: (e.cost, e.name))

    def __iter__(self) -> Iterator[Entry]:
        load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        load_plugins()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)


ATTACKS: Registry[Any] = Registry("attack")
DEFENCES: Registry[Any] = Registry("defence")

register_attack = ATTACKS.register
register_defence = DEFENCES.register


def parse_settings(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["pgd.steps=100", "square.max_queries=5000"]`` -> ``{"pgd": {"steps": "100"}, ...}``.

    Values stay strings (or YAML scalars: ``true``, ``null``, ``[1, 2]``); each plugin's
    config converts them to its declared types when it is created.
    """
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, param = key.strip().partition(".")
        if not sep or not dot or not name or not param:
            raise ConfigError(f"a setting looks like 'plugin.parameter=value', got {item!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        out.setdefault(name, {})[param] = value if isinstance(parsed, dict) else parsed
    return out
