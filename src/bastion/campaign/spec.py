"""The campaign file: targets x assessments x settings, validated, and expanded into cells.

A campaign file (YAML or JSON) names the models to assess (``targets``), what to run on each
(``assessments``, each of one ``kind``) and, per assessment, a ``matrix`` of settings to sweep.
Every combination is a :class:`Cell`: one target, one assessment with one setting. Each cell
has a content key: a hash of the model file, the data, the settings and bastion's version, so a
finished cell is found again whatever campaign or run asks for it.

The file's JSON Schema is published as ``campaign.schema.json`` beside this module
(:func:`schema`), generated from these models.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.core.errors import ConfigError

__all__ = [
    "AssessmentSpec",
    "CampaignSpec",
    "Cell",
    "TargetSpecEntry",
    "content_hash",
    "expand",
    "load_campaign",
    "schema",
]

Kind = Literal["evasion", "membership", "extraction", "inversion", "poisoning", "hardening"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

_Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
#: header names that carry credentials, and a reference to an environment variable
_SECRET_HEADER = re.compile(r"authorization|token|key|secret|cookie|password|auth", re.I)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_Settings = dict[str, dict[str, Any]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpecEntry(_Strict):
    """One model to assess: what ``bastion scan --target`` and ``--data`` take."""

    name: _Name = Field(description="The target's name in reports (letters, digits, . _ -).")
    target: str = Field(
        description="A demo name (digits-cnn), a model file (.pt, .onnx, .skops, .joblib) or "
        "an http(s) predict URL."
    )
    data: str | None = Field(
        None,
        description="The data to assess it on (a demo brings its own): a built-in name, "
        ".npz or .csv.",
    )
    arch: str | None = Field(None, description="The architecture of a state-dict model.")
    trust: bool = Field(False, description="Allow model files that can run code when loaded.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    label_column: str = Field("label", description="The label column of a CSV.")
    bounds: tuple[float, float] | None = Field(None, description="Input bounds of your data.")
    num_classes: int | None = Field(None, ge=2, description="Classes, if not all appear.")
    output_kind: Literal["logits", "probabilities", "labels"] | None = Field(
        None, description="What the model returns."
    )
    query_budget: int | None = Field(
        None, ge=1, description="Most queries the target may answer in one cell."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP headers of a URL target. A credential is written as ${VARIABLE} and "
        "read from the environment where the cell runs, so it is never in the file, the store "
        "or a report.",
    )
    timeout: float | None = Field(None, gt=0, description="URL targets: seconds per request.")
    retries: int | None = Field(None, ge=0, description="URL targets: retries of a request.")
    redirects: Literal["refuse", "same-origin"] | None = Field(
        None, description="URL targets: follow redirects to the same origin, or refuse them."
    )

    @model_validator(mode="after")
    def _no_literal_secrets(self) -> TargetSpecEntry:
        for name, value in self.headers.items():
            if _SECRET_HEADER.search(name) and not _REFERENCE.search(value):
                # never echo the value: it is most likely the secret itself
                raise ValueError(
                    f"header {name} holds a credential written into the file; write "
                    f"{name}: '... ${{VARIABLE}}' and set VARIABLE in the environment"
                )
        return self


class _Base(_Strict):
    name: _Name = Field(description="The assessment's name in reports.")
    seed: int = Field(0, description="Seed for sampling, attacks and training.")
    matrix: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Settings to sweep: each key is a field of this assessment, each value the "
        "list of values to try; every combination is a cell.",
    )


class EvasionSpec(_Base):
    """Robust accuracy over an epsilon sweep (``bastion scan``)."""

    kind: Literal["evasion"]
    eps: list[float] | None = Field(None, description="Epsilons (default: by the data).")
    norm: Literal["linf", "l2", "l1", "l0"] = "linf"
    attacks: list[str] | None = Field(None, description="Attacks by name (default: chosen).")
    preset: Literal["quick", "standard", "thorough"] | None = Field(
        None, description="The robustness evaluation's preset instead of a plain scan."
    )
    samples: int = Field(200, ge=1, description="Test inputs to attack.")
    settings: _Settings = Field(default_factory=dict, description="Per-attack parameters.")
    shards: int = Field(
        1,
        ge=1,
        le=4096,
        description="Split the inputs into this many blocks, each a task "
        "of its own, merged exactly (the figure depends on the block size, never on workers).",
    )


class MembershipSpec(_Base):
    """Membership inference: tell training data from held-out data."""

    kind: Literal["membership"]
    attacks: list[str] | None = None
    members: str = Field(
        "train",
        description="'train' (a demo's own training split) or, for your model, a file of "
        "samples it was trained on.",
    )
    candidates: int | None = Field(
        None,
        ge=10,
        description="Members and non-members each attacked (default: all the "
        "held-out data; half of it when shadow models need the rest as the adversary's own).",
    )
    settings: _Settings = Field(default_factory=dict)


class ExtractionSpec(_Base):
    """Model stealing through the prediction API."""

    kind: Literal["extraction"]
    attacks: list[str] | None = None
    max_queries: int = Field(2000, ge=1)
    settings: _Settings = Field(default_factory=dict)


class InversionSpec(_Base):
    """Model inversion and attribute inference."""

    kind: Literal["inversion"]
    attacks: list[str] | None = None
    settings: _Settings = Field(default_factory=dict)


class PoisoningSpec(_Base):
    """A poisoning attack on the target's training recipe, with a susceptibility curve."""

    kind: Literal["poisoning"]
    attack: str = Field("badnets", description="The poisoning attack.")
    params: dict[str, Any] = Field(default_factory=dict, description="Its parameters (rate...).")
    counts: list[int] = Field(
        default_factory=list, description="Poisoned-sample counts of the susceptibility curve."
    )
    arch: Literal["cnn", "mlp"] | None = Field(
        None, description="The victim's architecture (default: the demo's, else mlp)."
    )
    epochs: int = Field(10, ge=1)


class HardeningSpec(_Base):
    """Harden the target (``bastion harden``) and measure it before and after."""

    kind: Literal["hardening"]
    method: str = Field("pgd-at", description="name or name:param=value,...")
    eps: list[float] | None = None
    norm: Literal["linf", "l2"] = "linf"
    preset: Literal["quick", "standard", "thorough"] = "quick"
    samples: int = Field(200, ge=1)
    budget: float | None = Field(None, gt=0, description="Minutes the recipe must fit in.")


AssessmentSpec = Annotated[
    EvasionSpec | MembershipSpec | ExtractionSpec | InversionSpec | PoisoningSpec | HardeningSpec,
    Field(discriminator="kind"),
]


class CampaignSpec(_Strict):
    """A campaign: every target, assessed by every assessment, at every setting."""

    name: _Name = Field(description="The campaign's name: runs of one name are compared.")
    targets: list[TargetSpecEntry] = Field(min_length=1)
    assessments: list[AssessmentSpec] = Field(min_length=1)
    retries: int = Field(
        2, ge=0, le=10, description="Times a crashed cell is tried again before it is failed."
    )

    @model_validator(mode="after")
    def _unique(self) -> CampaignSpec:
        for what, names in (
            ("target", [t.name for t in self.targets]),
            ("assessment", [a.name for a in self.assessments]),
        ):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"two {what}s are called {', '.join(twice)}")
        for a in self.assessments:
            fields = set(type(a).model_fields) - {"matrix", "name", "kind"}
            for key, values in a.matrix.items():
                if key not in fields:
                    raise ValueError(
                        f"assessment {a.name}: the matrix sweeps {key!r}, which a {a.kind} "
                        f"assessment does not have (it has {', '.join(sorted(fields))})"
                    )
                if not values:
                    raise ValueError(f"assessment {a.name}: the matrix gives {key} no values")
        return self


def schema() -> dict[str, Any]:
    """The published JSON Schema of campaign files."""
    text = resources.files("bastion.campaign").joinpath("schema/campaign.schema.json")
    return json.loads(text.read_text("utf-8"))  # type: ignore[no-any-return]


def generated_schema() -> dict[str, Any]:
    """The schema as the models generate it (the published file must equal it)."""
    out = CampaignSpec.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = "https://github.com/bastion-ml/bastion/campaign.schema.json"
    return out


def load_campaign(path: str | Path) -> tuple[CampaignSpec, Path]:
    """The campaign in ``path`` (YAML or JSON), validated; and the folder its relative paths
    are read from. Every problem is one ConfigError naming the field."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"campaign file {p}: no such file")
    try:
        raw = yaml.safe_load(p.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"campaign file {p} is not valid YAML: {_first_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"campaign file {p} must be a mapping with name, targets, assessments")
    try:
        spec = CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "the file"
        raise ConfigError(f"campaign file {p}: {where}: {err['msg']}") from None
    return spec, p.parent.resolve()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# ------------------------------------------------------------------------------ the cells
@dataclass(frozen=True)
class Cell:
    """One target assessed by one assessment at one setting.

    Attributes:
        target: the target's entry (paths resolved against the campaign file's folder).
        assessment: the assessment with this cell's setting applied (its matrix emptied).
        setting: the matrix values of this cell (``{}`` without a matrix).
        key: the content key (see :func:`cell_key`).
    """

    target: TargetSpecEntry
    assessment: Any
    setting: dict[str, Any]
    key: str
    position: int = 0

    @property
    def label(self) -> str:
        shown = ",".join(f"{k}={_short(v)}" for k, v in self.setting.items())
        return f"{self.target.name}/{self.assessment.name}" + (f"[{shown}]" if shown else "")

    @property
    def kind(self) -> str:
        return str(self.assessment.kind)


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_short(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def expand(spec: CampaignSpec, root: Path, *, hashes: dict[str, str] | None = None) -> list[Cell]:
    """Every cell of ``spec``, targets outermost, in the file's order; each setting
    validated. ``hashes`` caches file digests across calls."""
    from bastion import __version__

    cache = hashes if hashes is not None else {}
    targets = [_resolve(t, root) for t in spec.targets]
    variants: list[tuple[Any, dict[str, Any]]] = []
    for a in spec.assessments:
        keys = list(a.matrix)
        for combo in itertools.product(*(a.matrix[k] for k in keys)):
            setting = dict(zip(keys, combo, strict=True))
            try:
                applied = type(a).model_validate(
                    {**a.model_dump(), **setting, "matrix": {}}, strict=False
                )
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"])
                raise ConfigError(
                    f"assessment {a.name}: the matrix setting {setting} is invalid: "
                    f"{where}: {err['msg']}"
                ) from None
            if isinstance(applied, PoisoningSpec):
                _check_poisoning(applied)
            variants.append((applied, setting))
    cells: list[Cell] = []
    for t in targets:
        t_hash = content_hash(t.target, cache)
        d_hash = content_hash(t.data, cache) if t.data else ""
        for a, setting in variants:
            material = {
                "model": t_hash,
                "data": d_hash,
                "load": t.model_dump(exclude={"name", "target", "data"}),
                "assessment": a.model_dump(exclude={"name", "matrix"}),
                "version": __version__,
            }
            key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
            cells.append(Cell(t, a, setting, key, position=len(cells)))
    return cells


def _check_poisoning(spec: PoisoningSpec) -> None:
    if any(c < 1 for c in spec.counts):
        raise ConfigError(f"assessment {spec.name}: counts must be positive, got {spec.counts}")


def _resolve(t: TargetSpecEntry, root: Path) -> TargetSpecEntry:
    """Relative paths in the file are read from its folder."""

    def fix(spec: str | None) -> str | None:
        if spec is None or "://" in spec or not ("/" in spec or Path(spec).suffix):
            return spec
        p = Path(spec).expanduser()
        return str(p if p.is_absolute() else (root / p).resolve())

    return t.model_copy(update={"target": fix(t.target), "data": fix(t.data)})


def expand_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers with each ``${VARIABLE}`` read from the environment (a ConfigError names
    a variable that is not set, never a value)."""
    out = {}
    for name, value in headers.items():

        def read(match: re.Match[str], header: str = name) -> str:
            found = os.environ.get(match.group(1))
            if found is None:
                raise ConfigError(
                    f"header {header} refers to ${{{match.group(1)}}}, which is not set in the "
                    "environment where the cell runs"
                )
            return found

        out[name] = _REFERENCE.sub(read, value)
    return out


def content_hash(spec: str | None, cache: dict[str, str] | None = None) -> str:
    """The SHA-256 of a model or data file's bytes; of the name for a built-in (a demo is
    trained from a fixed recipe, so its name and bastion's version identify it) or a URL (a
    remote model cannot be hashed: its URL stands for it). Cached by path, size and mtime."""
    if spec is None:
        return ""
    p = Path(spec)
    if "://" in spec or not p.exists():
        return hashlib.sha256(f"name:{spec}".encode()).hexdigest()
    stat = p.stat()
    memo = f"{p}:{stat.st_size}:{stat.st_mtime_ns}"
    if cache is not None and memo in cache:
        return cache[memo]
    digest = hashlib.sha256()
    if p.is_dir():
        for sub in sorted(x for x in p.rglob("*") if x.is_file()):
            digest.update(str(sub.relative_to(p)).encode())
            digest.update(_file_digest(sub))
    else:
        digest.update(_file_digest(p))
    out = digest.hexdigest()
    if cache is not None:
        cache[memo] = out
    return out


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def shard_count(cell: Cell) -> int:
    """How many tasks a cell is: its shards for an evasion assessment, otherwise one."""
    return int(getattr(cell.assessment, "shards", 1)) if cell.kind == "evasion" else 1
