"""What the image transformations share: their registration as evasion preprocessors."""

from __future__ import annotations

from typing import Any

from bastion.core.threat import Access

#: the registry fields every image transformation declares (its own name, defaults and fast
#: settings come on top): an evasion preprocessor that keeps white-box access (BPDA)
IMAGE_TRANSFORM: dict[str, Any] = {
    "family": "evasion",
    "defence_kind": "preprocessor",
    "access": Access.WHITE_BOX,
    "data_kinds": ("image",),
    "techniques": ("AML.T0043", "AML.T0015"),
    "mitigations": ("AML.M0010",),
}
