"""The evasion family's section of the HTML and Markdown reports."""

from __future__ import annotations

from markupsafe import Markup, escape

from bastion.core.assessment import Assessment
from bastion.report.base import Section, register_section

__all__ = ["EvasionSection"]

_WHAT = (
    "How much of the data keeps its label when an adversary may change each input by up to "
    "epsilon. Attacks with the same access run as an ensemble, cheapest first, each on the "
    "inputs still standing; the robust accuracy is the worst case per input over every attack, "
    "with a 95% Wilson interval."
)


@register_section("evasion")
class EvasionSection(Section):
    """Says what the robust-accuracy figures mean before the generic parts show them."""

    def intro_html(self, assessment: Assessment) -> str:
        return str(Markup("<p class='muted'>{}</p>").format(escape(_WHAT)))

    def intro_markdown(self, assessment: Assessment) -> str:
        return _WHAT
