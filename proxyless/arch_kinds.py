"""The two kinds of architecture the standalone builder knows, told apart by the file's "format".

    proxyless-arch/1        `Arch`: MBConv nets on a `SearchSpace` (MobileNetV2, ProxylessNAS ImageNet nets)
    proxyless-tree-arch/1   `TreeArch`: tree-cell PyramidNets (the paper's CIFAR-10 net, `proxyless.tree`)

Training, evaluation, export and the zoo take either (`AnyArch`); both have `name`, `label`, `input_size`,
`num_classes`, `with_task` and `to_dict`, and `proxyless.build_net` builds either. Search and latency
tables know MBConv spaces only so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxyless.arch import Arch, ArchError
from proxyless.infra.atomic import read_json
from proxyless.space import SpaceError
from proxyless.tree.arch import TREE_ARCH_FORMAT, TreeArch

AnyArch = Arch | TreeArch


def any_arch_from_dict(data: Any, where: str = "architecture") -> AnyArch:
    """A `TreeArch` for a dict in the tree format (or with tree cells), else an `Arch` (whose own checks
    name what is wrong)."""
    tree_format = TREE_ARCH_FORMAT.split("/")[0]
    if isinstance(data, dict) and (str(data.get("format", "")).startswith(tree_format) or "cells" in data):
        return TreeArch.from_dict(data, where)
    try:
        return Arch.from_dict(data, where)
    except SpaceError as err:
        raise ArchError(str(err)) from None


def load_any_arch(path: str | Path) -> AnyArch:
    """An arch.json of either kind."""
    path = Path(path)
    return any_arch_from_dict(read_json(path, ArchError, "architecture file"), where=str(path))
