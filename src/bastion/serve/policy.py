"""The gateway's policy: who may call, how often, what inputs pass, what answers look like.

A policy is a YAML (or JSON) file validated into :class:`Policy`; unknown keys are refused, so
a typo never silently turns a guard off. ``bastion serve`` without ``--policy`` uses the
defaults below, which already deny every caller without a key. The published JSON Schema is
``serve/schema/policy.schema.json`` (``python -m bastion.serve.policy DIR`` regenerates it; a
test keeps it identical to the model).
"""

from __future__ import annotations

import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.core.errors import ConfigError

__all__ = [
    "AuditPolicy",
    "AuthPolicy",
    "DetectorPolicy",
    "InputPolicy",
    "LimitPolicy",
    "MonitoringPolicy",
    "Policy",
    "ResponsePolicy",
    "generate_policy_schema",
    "load_policy",
    "shipped_policy_schema",
]

# "100/second", "5 per minute", "10000/day": the notation of the ``limits`` library
_RATE = re.compile(
    r"^\s*\d+\s*(/|\s+per\s+)\s*(\d+\s+)?(second|minute|hour|day|month|year)s?\s*$", re.I
)
_DB_SCHEMES = ("sqlite", "postgresql")
_LIMIT_SCHEMES = ("memory", "redis", "rediss")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_rate(value: str | None, what: str) -> str | None:
    if value is not None and not _RATE.match(value):
        raise ValueError(
            f"{what} looks like '100/second', '5 per minute' or '10000/day', got {value!r}"
        )
    return value


class AuthPolicy(_Strict):
    """Who may call. Every endpoint but health, readiness and the OpenAPI schema needs a key."""

    key_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a looked-up key is remembered; a key revoked from another "
        "process is refused at the latest this many seconds later (0: look up every time).",
    )
    public_metrics: bool = Field(
        default=False,
        description="Serve /metrics without a key (for a scraper on a private network).",
    )


class LimitPolicy(_Strict):
    """Per-key rate limits (requests) and query budgets (inputs answered)."""

    rate: str | None = Field(
        default="20/second",
        description="Requests per key per window, e.g. '20/second' (null: no rate limit).",
    )
    budget: str | None = Field(
        default="10000/day",
        description="Inputs answered per key per window, e.g. '10000/day' (null: no budget).",
    )
    storage: str = Field(
        default="memory://",
        description="Where counters live: 'memory://' (one process) or 'redis://host:6379/0' "
        "(shared by every replica).",
    )
    strategy: Literal["moving-window", "fixed-window", "sliding-window-counter"] = Field(
        default="moving-window", description="How windows are counted (moving-window is exact)."
    )

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        return _check_rate(value, "rate")

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        return _check_rate(value, "budget")

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower()
        if scheme not in _LIMIT_SCHEMES or "://" not in value:
            raise ValueError(f"storage must be memory:// or a redis:// URL, got {scheme!r}")
        return value


class InputPolicy(_Strict):
    """What an input must be to reach the model. Shape and bounds default to the target's."""

    max_batch: int = Field(
        default=256, ge=1, le=1_000_000, description="Inputs per request, at most."
    )
    max_body_bytes: int = Field(
        default=4 * 2**20, ge=64, le=2**30, description="Request body size, at most, in bytes."
    )
    shape: tuple[int, ...] | None = Field(
        default=None, description="Shape of one input (default: the target's input shape)."
    )
    bounds: tuple[float, float] | None = Field(
        default=None,
        description="Lowest and highest feature value allowed (default: the target's).",
    )
    dtype: Literal["float32", "float64"] = Field(
        default="float32",
        description="The dtype inputs are converted to; a value it cannot hold fails.",
    )

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or any(d < 1 for d in value)):
            raise ValueError(f"shape must be positive sizes, got {list(value)}")
        return value

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        import math

        if value is not None and not (
            math.isfinite(value[0]) and math.isfinite(value[1]) and value[0] < value[1]
        ):
            raise ValueError(f"bounds must be two finite numbers, low < high; got {list(value)}")
        return value


class AuditPolicy(_Strict):
    """How the audit log is written."""

    durability: Literal["process", "power"] = Field(
        default="process",
        description="SQLite only (PostgreSQL commits durably either way). process: a "
        "committed row survives a crash or kill of the gateway process (WAL, "
        "synchronous=NORMAL); power: it also survives an OS crash or a power cut "
        "(synchronous=FULL: an fsync per commit, about half the throughput).",
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a request waits for its row to be committed before the answer "
        "is withheld (503).",
    )


class DetectorPolicy(_Strict):
    """One detector, its settings, and what the gateway does when it fires."""

    detector: str = Field(
        description="'name' or 'name:param=value,...': a gateway detector (prada, query-stats) "
        "or a registered defence of kind detector (strip, squeeze-detector, ...).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The detector's parameters, as a mapping (instead of, or beside, the "
        "'name:param=value' form; a parameter given in both is an error).",
    )
    action: Literal["log", "flag", "throttle", "block"] = Field(
        default="flag",
        description="log: record the verdict only; flag: also open an incident; throttle: also "
        "quarantine the key (response.quarantine_rate); block: also refuse the request (input "
        "detectors) or the key until released (key detectors).",
    )
    fpr: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="For defence detectors: the false-positive rate their threshold is "
        "calibrated to on clean inputs.",
    )
    calibration: str | None = Field(
        default=None,
        description="For defence detectors: a .npy file of clean inputs (or an .npz with an "
        "array 'x'), shape (N, *input shape), to fit and calibrate on; default: the gateway's "
        "reference sample (bastion serve --data, or the demo's data).",
    )

    @model_validator(mode="after")
    def _known(self) -> DetectorPolicy:
        from bastion.serve.detection import check_detector_spec

        check_detector_spec(self.detector, dict(self.params))
        return self


class ResponsePolicy(_Strict):
    """How a quarantined key is throttled."""

    quarantine_rate: str = Field(
        default="1/minute",
        description="Requests a quarantined key may still make: a trickle, e.g. '1/minute'.",
    )

    @field_validator("quarantine_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        _check_rate(value, "quarantine_rate")
        return value


class MonitoringPolicy(_Strict):
    """Drift and accuracy monitoring against the reference sample."""

    window: int = Field(
        default=1000,
        ge=20,
        le=100_000,
        description="The latest answered inputs (and labelled answers) compared to the reference.",
    )
    min_samples: int = Field(
        default=50, ge=10, description="Inputs needed in the window before any drift test."
    )
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Significance of the drift tests (per-feature KS tests are "
        "Bonferroni-corrected).",
    )
    reference_size: int = Field(
        default=500, ge=20, le=100_000, description="Reference inputs kept, at most."
    )
    cache_seconds: float = Field(
        default=5.0, ge=0, le=3600, description="How long a drift report is reused."
    )


class Policy(_Strict):
    """Everything the gateway enforces. See ``docs/serving.md`` for a worked example."""

    version: Literal[1] = 1
    database: str = Field(
        default="sqlite:///bastion-serve.db",
        description="SQLAlchemy URL of the keys and the audit log: sqlite:///PATH "
        "(WAL; the default) or postgresql://user@host/db.",
    )
    auth: AuthPolicy = Field(default_factory=AuthPolicy)
    limits: LimitPolicy = Field(default_factory=LimitPolicy)
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    inputs: InputPolicy = Field(default_factory=InputPolicy)
    output: list[str] = Field(
        default_factory=list,
        description="Output hardening, postprocessor specs applied in order, e.g. "
        "['round:decimals=2'], ['topk:k=3'] or ['labels'].",
    )
    detectors: list[DetectorPolicy] = Field(
        default_factory=list,
        description="Detectors run on every answered request, each with its action.",
    )
    response: ResponsePolicy = Field(default_factory=ResponsePolicy)
    monitoring: MonitoringPolicy = Field(default_factory=MonitoringPolicy)

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        scheme = value.partition("://")[0].split("+")[0].lower()
        if "://" not in value or scheme not in _DB_SCHEMES:
            raise ValueError(
                f"database must be a sqlite:/// or postgresql:// URL, got scheme {scheme!r}"
            )
        return value

    @model_validator(mode="after")
    def _known_defences(self) -> Policy:
        """Output specs must name postprocessors; checked here so a bad file fails on load."""
        if self.output:
            from bastion.defences import Postprocessor, create_defence

            for spec in self.output:
                defence = create_defence(spec)
                if not isinstance(defence, Postprocessor):
                    raise ValueError(
                        f"output: {spec!r} is a {defence.entry.defence_kind}, not a postprocessor"
                    )
        return self


def _message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_policy(source: str | Path | dict[str, Any] | None = None) -> Policy:
    """A validated policy from a YAML/JSON file or a mapping; the defaults for ``None``.

    Raises :class:`ConfigError` with one line naming every problem found (up to five).
    """
    if source is None:
        return Policy()
    if isinstance(source, dict):
        raw: Any = source
        what = "policy"
    else:
        import yaml

        path = Path(source)
        what = f"policy {path}"
        if not path.is_file():
            raise ConfigError(f"policy file not found: {path}")
        try:
            text = path.read_text("utf-8")
            raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"cannot read {what}: {detail}") from None
        if raw is None:
            raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} must hold a mapping at the top level")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {_message(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(f"invalid {what}: {exc}") from None


def generate_policy_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file, as published."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://bastion-ml.github.io/schemas/policy.schema.json",
        **Policy.model_json_schema(),
        "title": "bastion serving policy",
    }


def shipped_policy_schema() -> dict[str, Any]:
    """The schema file shipped in the package."""
    text = resources.files("bastion.serve").joinpath("schema/policy.schema.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


if __name__ == "__main__":
    from bastion.core.files import atomic_write

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "schema"
    atomic_write(
        folder / "policy.schema.json", json.dumps(generate_policy_schema(), indent=2) + "\n"
    )
