"""The two kinds of architecture the standalone builder knows, told apart by the file's "format".

    proxyless-arch/1        `Arch`: MBConv nets on a `SearchSpace` (MobileNetV2, ProxylessNAS ImageNet nets)
    proxyless-tree-arch/1   `TreeArch`: tree-cell PyramidNets (the paper's CIFAR-10 net, `proxyless.tree`)

Training, evaluation, export and the zoo take either (`AnyArch`); both have `name`, `label`, `input_size`,
`num_classes`, `with_task` and `to_dict`, and `proxyless.build_net` builds either. Spaces come in the same
two kinds (`AnySpace`: a `SearchSpace`, or a `TreeSpace` whose file says "format: proxyless-tree-space/1"),
and `search` and `lut build` take either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyless.arch import Arch, ArchError
from proxyless.infra.atomic import read_json
from proxyless.space import PRESETS, SearchSpace, SpaceError, read_space_file
from proxyless.tree.arch import TREE_ARCH_FORMAT, TreeArch
from proxyless.tree.space import TREE_PRESETS, TreeSpace, is_tree_space_data

AnyArch = Arch | TreeArch
AnySpace = SearchSpace | TreeSpace  # an MBConv space, or a tree-cell one (`proxyless.tree.space`)


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


def any_space_from_dict(data: Any, where: str = "search space") -> AnySpace:
    """A `TreeSpace` for data in the tree-space format (or with a cell template), else a `SearchSpace`."""
    return TreeSpace.from_dict(data, where) if is_tree_space_data(data) else SearchSpace.from_dict(data, where)


def get_any_space(name_or_path: str) -> AnySpace:
    """A preset of either kind by name (`proxyless-cifar`, `tree-tiny`), or a space file of either kind."""
    if name_or_path in TREE_PRESETS:
        return TREE_PRESETS[name_or_path]
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    if Path(name_or_path).suffix.lower() not in (".yaml", ".yml", ".json"):
        presets = ", ".join([*PRESETS, *TREE_PRESETS])
        raise SpaceError(f"unknown search space {name_or_path!r}; use a preset ({presets}) or a .yaml/.json file")
    return any_space_from_dict(read_space_file(name_or_path), where=name_or_path)


def arch_of_indices(space: AnySpace, indices: Sequence[int], name: str = "") -> AnyArch:
    """The net of `space` that picks candidate `indices[i]` at searchable layer (or searched edge) i."""
    if isinstance(space, TreeSpace):
        return space.arch_of(indices, name)
    return Arch(space, tuple(slot.candidates[i] for slot, i in zip(space.layers(), indices, strict=True)), name)


def on_space(arch: AnyArch, space: AnySpace) -> AnyArch:
    """`arch` with the task of `space`: a latency table is for the deployed space, whose classes may differ
    from those of the data a net was searched on."""
    if isinstance(arch, TreeArch):
        return arch.with_task(space.input_size, space.num_classes)
    return Arch(space, arch.ops, arch.name)
