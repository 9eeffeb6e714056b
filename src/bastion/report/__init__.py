"""Reports made from assessments: formats are plugins over one general shape.

``json`` (versioned, with a JSON Schema), ``html`` (self-contained, with plots), ``sarif``
(SARIF 2.1.0 for code-scanning dashboards) and ``md`` (Markdown for a pull-request comment).
"""

from bastion.report.base import (
    RENDERERS,
    SECTIONS,
    Section,
    parse_formats,
    register_renderer,
    register_section,
    write_report,
)

__all__ = [
    "RENDERERS",
    "SECTIONS",
    "Section",
    "parse_formats",
    "register_renderer",
    "register_section",
    "write_report",
]
