"""The description of an AI system to threat-model: its assets, exposure and business impact.

A system description is a YAML (or JSON) file validated by :class:`SystemDescription`; the
same model is published as a JSON Schema (``threats/schema/system.schema.json``) for editors
and CI.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.threats._io import load_model_file

__all__ = [
    "ID_PATTERN",
    "Assets",
    "Cadence",
    "Caller",
    "DataSource",
    "DatasetAsset",
    "EndpointAsset",
    "Exposure",
    "Impact",
    "Level",
    "ModelAsset",
    "OutputDetail",
    "PipelineAsset",
    "SystemDescription",
    "load_system",
]


class Level(str, Enum):
    """How bad a harm would be for the business."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def score(self) -> int:
        """1 (none) to 5 (critical), the impact scale used in risk scoring."""
        return ["none", "low", "medium", "high", "critical"].index(self.value) + 1


class Exposure(str, Enum):
    """Where an endpoint can be reached from."""

    PUBLIC_API = "public-api"
    PARTNER_API = "partner-api"
    INTERNAL = "internal"
    ON_DEVICE = "on-device"


class OutputDetail(str, Enum):
    """What an endpoint returns for each query."""

    LABELS = "labels"
    TOP_K = "top-k"
    SCORES = "scores"


class Caller(str, Enum):
    """Who can query an endpoint, from most to least open."""

    ANONYMOUS = "anonymous"
    REGISTERED = "registered"
    CUSTOMERS = "customers"
    PARTNERS = "partners"
    EMPLOYEES = "employees"


class DataSource(str, Enum):
    """Where training data comes from."""

    INTERNAL = "internal"
    PARTNER = "partner"
    PURCHASED = "purchased"
    THIRD_PARTY_LABELERS = "third-party-labelers"
    PUBLIC_DATASET = "public-dataset"
    SCRAPED = "scraped"
    USER_FEEDBACK = "user-feedback"


class Cadence(str, Enum):
    """How often a model is retrained on new data."""

    NEVER = "never"
    YEARLY = "yearly"
    QUARTERLY = "quarterly"
    MONTHLY = "monthly"
    WEEKLY = "weekly"
    DAILY = "daily"
    CONTINUOUS = "continuous"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Asset ids name files (a scan with --plan writes one report folder per asset), so they are a
# single safe path component: no separators, no leading dot, nothing a shell or a path resolves.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Impact(_Strict):
    """The business impact of losing each security property."""

    confidentiality: Level = Field(
        default=Level.MEDIUM, description="model, data or personal information leaks"
    )
    integrity: Level = Field(default=Level.MEDIUM, description="the model decides wrongly")
    availability: Level = Field(default=Level.MEDIUM, description="the service is down or costly")
    notes: str = ""

    def of(self, harm: str) -> Level:
        return Level(getattr(self, harm))


class ModelAsset(_Strict):
    """A trained model."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    artifact: str | None = Field(
        default=None,
        description=(
            "the name a bastion scan report gives this model as its target (a zoo name such "
            "as fraud-mlp, a model file's name such as model.onnx, or an endpoint URL), so "
            "gap analysis can match scan evidence to it"
        ),
    )
    description: str = ""
    data_kind: Literal["image", "tabular", "audio", "text", "video", "timeseries"]
    task: str = "classification"
    architecture_public: bool = Field(default=False, description="architecture is published")
    base_model: str | None = Field(
        default=None, description="public pretrained model it was fine-tuned from, if any"
    )
    weights_location: Literal["server", "device", "partner"] = Field(
        default="server", description="where the weights live; 'device' means shipped to users"
    )
    physical_inputs: bool = Field(
        default=False, description="inputs are captured from the physical world by sensors"
    )
    biometric: bool = Field(default=False, description="recognises people (face, voice, ...)")
    trained_on: tuple[str, ...] = Field(default=(), description="ids of dataset assets")
    retraining: Cadence = Cadence.NEVER
    impact: Impact | None = Field(default=None, description="overrides the system's impact")


class DatasetAsset(_Strict):
    """A dataset used for training or evaluation."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    description: str = ""
    sources: tuple[DataSource, ...] = Field(min_length=1)
    personal_data: bool = False


class PipelineAsset(_Strict):
    """A training or deployment pipeline."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    description: str = ""
    produces: tuple[str, ...] = Field(default=(), description="ids of model assets it builds")
    third_party_dependencies: bool = True
    downloads_pretrained: bool = False
    artifact_store_access: Literal["restricted", "team", "broad"] = "team"


class EndpointAsset(_Strict):
    """A way to query a model: an API, a partner integration or an app on a device."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    description: str = ""
    model: str = Field(description="id of the model asset it serves")
    exposure: Exposure
    outputs: OutputDetail = OutputDetail.LABELS
    top_k: int | None = Field(default=None, ge=1)
    callers: tuple[Caller, ...] = Field(default=(Caller.EMPLOYEES,), min_length=1)
    authentication: bool = True
    queries_per_caller_per_day: int | None = Field(
        default=None, ge=1, description="rate limit per caller; null means unlimited"
    )


class Assets(_Strict):
    models: tuple[ModelAsset, ...] = Field(min_length=1)
    datasets: tuple[DatasetAsset, ...] = ()
    pipelines: tuple[PipelineAsset, ...] = ()
    endpoints: tuple[EndpointAsset, ...] = ()


class SystemDescription(_Strict):
    """An AI system: what it is made of, who can reach it and what its failures would cost."""

    schema_version: Literal["1.0"] = "1.0"
    name: str = Field(min_length=1)
    description: str = ""
    owner: str = ""
    impact: Impact = Impact()
    assets: Assets

    @model_validator(mode="after")
    def _check_references(self) -> SystemDescription:
        a = self.assets
        ids = [x.id for group in (a.models, a.datasets, a.pipelines, a.endpoints) for x in group]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"asset ids must be unique; repeated: {', '.join(dupes)}")
        models = {m.id for m in a.models}
        datasets = {d.id for d in a.datasets}
        for m in a.models:
            for d in m.trained_on:
                if d not in datasets:
                    raise ValueError(f"model {m.id!r} is trained_on unknown dataset {d!r}")
        for e in a.endpoints:
            if e.model not in models:
                raise ValueError(f"endpoint {e.id!r} serves unknown model {e.model!r}")
        for p in a.pipelines:
            for m_id in p.produces:
                if m_id not in models:
                    raise ValueError(f"pipeline {p.id!r} produces unknown model {m_id!r}")
        return self

    def endpoints_for(self, model_id: str) -> list[EndpointAsset]:
        return [e for e in self.assets.endpoints if e.model == model_id]

    def datasets_for(self, model: ModelAsset) -> list[DatasetAsset]:
        return [d for d in self.assets.datasets if d.id in model.trained_on]

    def pipelines_for(self, model_id: str) -> list[PipelineAsset]:
        return [p for p in self.assets.pipelines if model_id in p.produces]

    def impact_for(self, model: ModelAsset) -> Impact:
        return model.impact or self.impact


def load_system(path: str | Path) -> SystemDescription:
    """Read and validate a system description; ``ConfigError`` with one line if it is wrong."""
    return load_model_file(path, SystemDescription, "system description")
