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
from bastion.report.json import SCHEMA_VERSION, load_schema, to_dict

__all__ = [
    "RENDERERS",
    "SCHEMA_VERSION",
    "SECTIONS",
    "Section",
    "load_schema",
    "parse_formats",
    "register_renderer",
    "register_section",
    "to_dict",
    "write_report",
]
