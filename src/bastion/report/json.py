"""``report.json``: the versioned, machine-readable scan report."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bastion.assess.scan import ScanResult
from bastion.assess.stats import wilson_interval
from bastion.catalog import get_mitigation, get_technique

__all__ = ["SCHEMA_VERSION", "atomic_write", "load_schema", "to_dict", "write_json"]

SCHEMA_VERSION = "1.0"


def load_schema() -> dict[str, Any]:
    """The JSON Schema that every ``report.json`` validates against."""
    text = (
        resources.files("bastion.report").joinpath("schema/report.schema.json").read_text("utf-8")
    )
    return json.loads(text)  # type: ignore[no-any-return]


def _example(ex: Any, kind: str, feature_names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": ex.index,
        "epsilon": ex.epsilon,
        "label": ex.label,
        "clean_prediction": ex.clean_prediction,
        "adversarial_prediction": ex.adversarial_prediction,
        "attack": ex.attack,
    }
    if kind == "tabular":
        delta = (ex.adversarial - ex.clean).reshape(-1)
        order = np.argsort(-np.abs(delta))[:5]
        out["largest_changes"] = [
            {
                "feature": feature_names[i] if i < len(feature_names) else f"x{i}",
                "clean": float(ex.clean.reshape(-1)[i]),
                "adversarial": float(ex.adversarial.reshape(-1)[i]),
            }
            for i in order
            if delta[i] != 0
        ]
    return out


def to_dict(result: ScanResult) -> dict[str, Any]:
    """The report as plain JSON-ready data."""
    from bastion import __version__

    techniques = sorted({t for f in result.findings for t in f.techniques})
    mitigations = sorted({m for f in result.findings for m in f.mitigations})
    kind = str(result.dataset.get("kind", "image"))
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "bastion", "version": __version__, "python": platform.python_version()},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "target": result.target,
        "dataset": result.dataset,
        "threat": json.loads(result.threat.model_dump_json()),
        "scan": {
            "samples": result.samples,
            "seed": result.seed,
            "attacks": result.attacks,
            "attack_params": result.attack_params,
            "seconds": round(result.seconds, 3),
        },
        "clean_accuracy": {
            "value": result.clean_accuracy,
            "correct": result.clean_correct,
            "total": result.samples,
            "ci95": list(wilson_interval(result.clean_correct, result.samples)),
        },
        "sweep": [
            {
                "epsilon": p.epsilon,
                "robust_accuracy": p.robust_accuracy,
                "robust": p.robust,
                "total": p.total,
                "ci95": list(p.interval),
                "by_access": {k: v / p.total for k, v in p.group_robust.items()},
                "attacks": [
                    {
                        "attack": s.attack,
                        "access": s.access,
                        "attacked": s.attacked,
                        "fooled": s.fooled,
                        "queries": s.queries,
                        "seconds": round(s.seconds, 4),
                        "median_queries_to_success": s.median_queries_to_success,
                    }
                    for s in p.attacks
                ],
            }
            for p in result.sweep
        ],
        "findings": [json.loads(f.model_dump_json()) for f in result.findings],
        "techniques": [{"id": t, "name": get_technique(t).name} for t in techniques],
        "mitigations": [{"id": m, "name": get_mitigation(m).name} for m in mitigations],
        "examples": [_example(e, kind, result.feature_names) for e in result.examples],
        "class_names": result.class_names,
        "warnings": result.warnings,
    }


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(result: ScanResult, path: Path) -> dict[str, Any]:
    data = to_dict(result)
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return data
