"""Reports made from scan results: JSON (versioned, with a schema) and self-contained HTML."""

from bastion.report.html import render_html, write_html
from bastion.report.json import SCHEMA_VERSION, load_schema, to_dict, write_json

__all__ = ["SCHEMA_VERSION", "load_schema", "render_html", "to_dict", "write_html", "write_json"]
