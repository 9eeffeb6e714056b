"""Every coloured cell and badge of the HTML reports stays readable (WCAG AA, 4.5:1).

Two checks: a small CSS cascade in pure Python over the rendered HTML (runs everywhere), and
the real thing in headless Chromium (computed styles), skipped only when no Chromium is found.
"""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from itertools import cycle
from pathlib import Path

import pytest

from bastion.catalog import load_catalog
from bastion.threats import ThreatModel
from bastion.threats.gaps import EvidenceMatch, GapAnalysis, GapEntry, GapStatus
from bastion.threats.render import render_gaps_html, render_threat_model_html

AA = 4.5
STATUS_CLASSES = {s.value for s in GapStatus} | {"na"}
BAND_CLASSES = {"critical", "high", "medium", "low"}
OTHER_CLASSES = {"warning"}  # the unused-evidence banner of gaps.html
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# --- colour arithmetic (WCAG 2.x) -----------------------------------------------------------


def _channel(c: float) -> float:
    c /= 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _luminance(rgb: tuple[float, float, float]) -> float:
    r, g, b = (_channel(x) for x in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: tuple[float, float, float], bg: tuple[float, float, float]) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _hex(value: str) -> tuple[float, float, float]:
    value = value.strip().lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def test_contrast_formula_matches_known_values() -> None:
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    # The bug this file guards against: white text on the #fafafa zebra stripe.
    assert contrast((255, 255, 255), _hex("#fafafa")) < 1.1


# --- a gap analysis with every status, on odd and even rows, with n/a cells -----------------


def _every_status() -> GapAnalysis:
    catalog = load_catalog()
    techniques = sorted(t for t in catalog.techniques if not catalog.techniques[t].enabler)[:14]
    statuses = cycle(list(GapStatus))
    entries = []
    for i, technique in enumerate(techniques):
        for asset in ("model-a", "model-b"):
            if asset == "model-b" and i % 3 == 0:
                continue  # not applicable to model-b: an n/a cell
            entries.append(
                GapEntry(
                    technique=technique,
                    name=catalog.techniques[technique].name,
                    asset=asset,
                    risk=12,
                    band="high",
                    status=next(statuses),
                    controls=("c1",),
                    planned=(),
                    evidence=(),
                    recommended=(),
                    attacks=(),
                    action="act",
                )
            )
    stray = EvidenceMatch("stray.json", (), "none", "it names no asset and no target")
    return GapAnalysis(
        system="every status", entries=tuple(entries), reports=("stray.json",), matches=(stray,)
    )


# --- pure-Python cascade --------------------------------------------------------------------

_VOID = {"br", "meta", "img", "hr", "input", "link", "wbr", "col"}


class _Element:
    def __init__(self, tag: str, classes: set[str], index: int, parent: _Element | None) -> None:
        self.tag, self.classes, self.index, self.parent = tag, classes, index, parent
        self.children = 0

    @property
    def chain(self) -> list[_Element]:
        out: list[_Element] = []
        node: _Element | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


class _Collector(HTMLParser):
    """Every element with a status or band class, with its ancestors and sibling index."""

    def __init__(self) -> None:
        super().__init__()
        self.root = _Element("#document", set(), 1, None)
        self.stack = [self.root]
        self.coloured: list[_Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parent = self.stack[-1]
        parent.children += 1
        classes = set((dict(attrs).get("class") or "").split())
        el = _Element(tag, classes, parent.children, parent)
        if classes & (STATUS_CLASSES | BAND_CLASSES | OTHER_CLASSES):
            self.coloured.append(el)
        if tag not in _VOID:
            self.stack.append(el)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return


_COMPOUND = re.compile(r"^([a-z0-9*]*)((?:\.[\w-]+|:nth-child\((?:even|odd)\))*)$")


def _compound_matches(compound: str, el: _Element) -> bool:
    m = _COMPOUND.match(compound)
    if m is None:
        raise AssertionError(f"the test's cascade does not understand selector part {compound!r}")
    tag, rest = m.groups()
    if tag not in ("", "*", el.tag):
        return False
    for part in re.findall(r"\.[\w-]+|:nth-child\(\w+\)", rest):
        if part.startswith(".") and part[1:] not in el.classes:
            return False
        if part == ":nth-child(even)" and el.index % 2:
            return False
        if part == ":nth-child(odd)" and not el.index % 2:
            return False
    return True


def _selector_matches(selector: str, el: _Element) -> bool:
    parts = selector.split()
    if any(p in (">", "+", "~") for p in parts):
        raise AssertionError(f"the test's cascade does not understand combinators: {selector!r}")
    if not _compound_matches(parts[-1], el):
        return False
    ancestors = el.chain[:-1]
    for part in reversed(parts[:-1]):
        while ancestors and not _compound_matches(part, ancestors[-1]):
            ancestors.pop()
        if not ancestors:
            return False
        ancestors.pop()
    return True


def _specificity(selector: str) -> tuple[int, int, int]:
    classes = len(re.findall(r"\.[\w-]+|:[\w-]+", selector))
    types = len(re.findall(r"(?:^|\s)([a-z][a-z0-9]*)", selector))
    return (selector.count("#"), classes, types)


def _rules(css: str) -> list[tuple[str, dict[str, str]]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    out = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        decls = {}
        for decl in body.split(";"):
            if ":" in decl:
                name, value = decl.split(":", 1)
                decls[name.strip()] = value.strip()
        if "background" in decls:
            decls.setdefault("background-color", decls["background"])
        for selector in selectors.split(","):
            out.append((selector.strip(), decls))
    return out


def _declared(rules: list[tuple[str, dict[str, str]]], el: _Element, prop: str) -> str | None:
    best: tuple[tuple[int, int, int], int] | None = None
    value = None
    for order, (selector, decls) in enumerate(rules):
        if prop in decls and _selector_matches(selector, el):
            key = (_specificity(selector), order)
            if best is None or key >= best:
                best, value = key, decls[prop]
    return value


def _computed(rules: list[tuple[str, dict[str, str]]], el: _Element) -> tuple[str, str]:
    """(text colour, painted background): colour inherits; background shows through."""
    colour = background = None
    for node in reversed(el.chain):
        if colour is None:
            colour = _declared(rules, node, "color")
        if background is None:
            bg = _declared(rules, node, "background-color")
            if bg is not None and bg != "transparent":
                background = bg
    return colour or "#000", background or "#fff"


def _pure_python_cells(page: str) -> list[tuple[str, float]]:
    css = page.split("<style>", 1)[1].split("</style>", 1)[0]
    rules = _rules(css)
    collector = _Collector()
    collector.feed(page)
    out = []
    for el in collector.coloured:
        colour, background = _computed(rules, el)
        label = f"{el.tag}.{'.'.join(sorted(el.classes))} (child {el.index} of its parent)"
        out.append((label, contrast(_hex(colour), _hex(background))))
    return out


def _pages(models: dict[str, ThreatModel]) -> dict[str, str]:
    return {
        "gaps": render_gaps_html(_every_status()),
        "threat-model": render_threat_model_html(models["fraud-scoring-api"]),
    }


def test_fixture_puts_every_status_on_odd_and_even_rows() -> None:
    collector = _Collector()
    collector.feed(render_gaps_html(_every_status()))
    seen = {
        (cls, el.parent.index % 2 if el.parent else -1)
        for el in collector.coloured
        if el.tag == "td"
        for cls in el.classes & STATUS_CLASSES
    }
    assert seen == {(cls, parity) for cls in STATUS_CLASSES for parity in (0, 1)}


@pytest.mark.parametrize("page", ["gaps", "threat-model"])
def test_coloured_cells_and_badges_meet_aa_by_the_css_cascade(
    models: dict[str, ThreatModel], page: str
) -> None:
    cells = _pure_python_cells(_pages(models)[page])
    assert cells
    poor = [(label, round(ratio, 2)) for label, ratio in cells if ratio < AA]
    assert not poor, f"below {AA}:1: {sorted(set(poor))[:10]}"


def test_the_cascade_catches_the_zebra_stripe_bug() -> None:
    page = render_gaps_html(_every_status())
    broken = page.replace("<style>", "<style>tr:nth-child(even) td{background:#fafafa}", 1)
    poor = {label for label, ratio in _pure_python_cells(broken) if ratio < AA}
    assert any("covered-measured" in label for label in poor)


# --- the real browser -----------------------------------------------------------------------

_PROBE = """<script>
(() => {
  const rgba = (s) => { const m = s.match(/[\\d.]+/g).map(Number);
                        return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const background = (el) => {
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) return c;
    }
    return [255, 255, 255, 1];
  };
  const classes = %CLASSES%;
  const out = [];
  for (const el of document.querySelectorAll("td, span, p")) {
    const hit = classes.filter((c) => el.classList.contains(c));
    if (!hit.length) continue;
    for (const node of [el, ...el.querySelectorAll("*")]) {
      if (!node.textContent.trim()) continue;  // no text, nothing to read (a <br>)
      out.push({cls: hit.join(" "), tag: node.tagName, text: node.textContent.trim().slice(0, 30),
                fg: rgba(getComputedStyle(node).color), bg: background(node)});
    }
  }
  const pre = document.createElement("pre");
  pre.id = "contrast-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, _CHROMIUM_NAMES) if p), None)


def _browser_cells(binary: str, page: str, tmp_path: Path) -> list[dict[str, object]]:
    classes = sorted(STATUS_CLASSES | BAND_CLASSES | OTHER_CLASSES)
    probe = _PROBE.replace("%CLASSES%", json.dumps(classes))
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", probe + "</body>", 1), "utf-8")
    result = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r'<pre id="contrast-probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"chromium gave no probe output (rc {result.returncode}): {result.stderr[-500:]}"
    cells: list[dict[str, object]] = json.loads(htmllib.unescape(match.group(1)))
    return cells


@pytest.mark.skipif(
    _chromium() is None,
    reason="no Chromium binary found (looked for: " + ", ".join(_CHROMIUM_NAMES) + ")",
)
@pytest.mark.parametrize("page", ["gaps", "threat-model"])
def test_coloured_cells_and_badges_meet_aa_in_chromium(
    models: dict[str, ThreatModel], page: str, tmp_path: Path
) -> None:
    binary = _chromium()
    assert binary is not None
    cells = _browser_cells(binary, _pages(models)[page], tmp_path)
    if page == "gaps":
        assert {str(c["cls"]) for c in cells} >= STATUS_CLASSES | OTHER_CLASSES
    assert cells
    poor = []
    for cell in cells:
        fg, bg = cell["fg"], cell["bg"]
        assert isinstance(fg, list)
        assert isinstance(bg, list)
        ratio = contrast((fg[0], fg[1], fg[2]), (bg[0], bg[1], bg[2]))
        if ratio < AA:
            poor.append((cell["cls"], cell["tag"], cell["text"], round(ratio, 2)))
    assert not poor, f"below {AA}:1 in Chromium: {poor[:10]}"
