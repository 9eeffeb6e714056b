"""Target loaders: what turns ``--target SPEC`` into a target, one file per kind of model.

Each loader registers the URL schemes, file suffixes or names it answers for, and whether
its files can carry code (and so need ``--trust``). :func:`load_target` picks the loader; a
new kind of target is one new module here (or in a plugin package) and nothing else.
"""

from bastion.loaders.base import (
    TARGET_LOADERS,
    LoaderEntry,
    TargetSpec,
    load_target,
    register_loader,
)

__all__ = ["TARGET_LOADERS", "LoaderEntry", "TargetSpec", "load_target", "register_loader"]
