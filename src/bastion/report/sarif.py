"""``report.sarif``: findings as SARIF 2.1.0, so they show up in code-scanning dashboards.

Each kind of finding is a rule (``evasion-white-box``); each finding is a result at the model
file (or the report, for a remote or built-in model), with its ATLAS techniques as tags, a
``security-severity`` score that dashboards sort by, and the measured evidence as properties.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.core.assessment import Report
from bastion.core.findings import Finding, Severity
from bastion.report.base import register_renderer
from bastion.report.json import catalog_name

__all__ = ["SARIF_SCHEMA", "SarifRenderer", "to_sarif"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# the 0-10 scale code-scanning dashboards read from "security-severity"
_SCORE = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def _location(report: Report) -> str:
    source = str(report.target.get("source") or "")
    if source and "://" not in source and Path(source).suffix:
        return Path(source).as_posix()
    return "report.json"


def _rule(f: Finding) -> dict[str, Any]:
    names = [f"{t} {catalog_name('technique', t) or ''}".strip() for t in f.techniques]
    help_lines = [f"MITRE ATLAS: {', '.join(names)}."]
    for m in f.mitigations:
        help_lines.append(f"Mitigation {m}: {catalog_name('mitigation', m) or m}.")
    first = f.techniques[0] if f.techniques else None
    rule: dict[str, Any] = {
        "id": f.id,
        "name": "".join(w.capitalize() for w in f.id.replace("_", "-").split("-")),
        "shortDescription": {"text": f.title},
        "fullDescription": {"text": f.title + "."},
        "help": {"text": " ".join(help_lines)},
        "defaultConfiguration": {"level": _LEVEL[f.severity]},
        "properties": {
            "tags": ["security", "adversarial-ml", *f.techniques],
            "security-severity": _SCORE[f.severity],
        },
    }
    if first and first.startswith("AML."):
        base = first.split(".")[0] + "." + first.split(".")[1]
        rule["helpUri"] = f"https://atlas.mitre.org/techniques/{base}"
    return rule


def to_sarif(report: Report) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log (one run)."""
    from bastion import __version__

    findings = report.findings
    rules: dict[str, dict[str, Any]] = {}
    for f in findings:
        rules.setdefault(f.id, _rule(f))
    index = {rid: i for i, rid in enumerate(rules)}
    uri = _location(report)
    results = []
    for f in findings:
        text = f.summary + (f" The figure is unreliable: {f.unreliable}" if f.unreliable else "")
        results.append(
            {
                "ruleId": f.id,
                "ruleIndex": index[f.id],
                "level": _LEVEL[f.severity],
                "message": {"text": text},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
                "partialFingerprints": {
                    "bastionFinding/v1": f"{report.target.get('name', '')}:{f.id}"
                },
                "properties": {
                    "severity": f.severity.value,
                    "techniques": list(f.techniques),
                    "mitigations": list(f.mitigations),
                    "attacks": list(f.attacks),
                    "unreliable": f.unreliable,
                    "evidence": json.loads(json.dumps(f.evidence, default=str)),
                },
            }
        )
    invocation: dict[str, Any] = {"executionSuccessful": report.complete}
    if report.command:
        invocation["commandLine"] = report.command
    notes = [{"message": {"text": w}, "level": "warning"} for w in report.warnings]
    if notes:
        invocation["toolExecutionNotifications"] = notes
    return sarif_log(
        __version__,
        rules,
        results,
        invocation,
        {"target": report.target.get("name"), "asset": report.asset},
    )


def sarif_log(
    version: str,
    rules: dict[str, dict[str, Any]],
    results: list[dict[str, Any]],
    invocation: dict[str, Any],
    properties: dict[str, Any],
    **run: Any,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one run of bastion: its rules, results, invocation, properties,
    and any other field of the run (``automationDetails``, say)."""
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bastion",
                        "version": version,
                        "semanticVersion": version,
                        "informationUri": "https://github.com/bastion-ml/bastion",
                        "rules": list(rules.values()),
                    }
                },
                **run,
                "invocations": [invocation],
                "results": results,
                "properties": properties,
            }
        ],
    }


@register_renderer("sarif", extension="sarif", media_type="application/sarif+json")
class SarifRenderer:
    """Findings as SARIF 2.1.0 for code-scanning dashboards (report.sarif)."""

    def render(self, report: Report) -> str:
        return json.dumps(to_sarif(report), indent=2) + "\n"
