"""The model zoo: MobileNetV2 (the hand-designed baseline family) and the published ProxylessNAS nets.

The five ProxylessNAS entries are `arch.json` files shipped in `proxyless/zoo/archs/`, produced from
the authors' configurations by `proxyless zoo import`: the four ImageNet nets are MBConv `Arch`s (see
`proxyless.zoo.legacy`), the CIFAR-10 net `proxyless_cifar` a tree-cell PyramidNet, a `TreeArch` (see
`proxyless.tree.legacy`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from proxyless.arch import Arch
from proxyless.arch_kinds import AnyArch, any_arch_from_dict
from proxyless.errors import UserError
from proxyless.ops import MBConv
from proxyless.space import SearchSpace, Stage

MOBILENETV2_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
PUBLISHED = ("proxyless_mobile", "proxyless_cpu", "proxyless_gpu", "proxyless_mobile_14")
PUBLISHED_TREE = ("proxyless_cifar",)  # tree-cell PyramidNets


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str


def mobilenet_v2(width_mult: float = 1.0) -> Arch:
    """MobileNetV2 (Sandler et al., 2018) as an `Arch`: every layer is mb_k3_e6."""
    stages = tuple(Stage(w, d, s)
                   for w, d, s in ((24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)))
    space = SearchSpace(
        name=f"mobilenetv2_{width_mult:g}",
        input_size=224,
        stem_channels=32,
        stem_stride=2,
        first_block_channels=16,
        stages=stages,
        candidates=(MBConv(3, 6),),
        feature_mix_channels=1280,
        num_classes=1000,
        width_mult=width_mult,
        zero_when_shape_kept=False,
    )
    return Arch(space, (MBConv(3, 6),) * space.num_layers, space.name)


def list_zoo() -> list[ZooEntry]:
    entries = [ZooEntry(f"mobilenetv2_{w:g}", f"MobileNetV2, width x{w:g} (hand-designed baseline)")
               for w in MOBILENETV2_WIDTHS]
    entries += [ZooEntry(name, f"ProxylessNAS {name.removeprefix('proxyless_')} (Cai et al., 2019)")
                for name in PUBLISHED]
    entries.append(ZooEntry("proxyless_cifar", "ProxylessNAS CIFAR-10: PyramidNet with tree-cell blocks "
                                               "(Cai et al., 2019; 32 px, 10 classes)"))
    return entries


def get_zoo_arch(name: str) -> AnyArch:
    """A zoo entry by name, e.g. 'mobilenetv2_0.35', 'proxyless_mobile' (an `Arch`) or 'proxyless_cifar'
    (a `TreeArch`)."""
    if name in PUBLISHED + PUBLISHED_TREE:
        text = resources.files("proxyless.zoo").joinpath("archs", f"{name}.json").read_text()
        return any_arch_from_dict(json.loads(text), where=f"zoo entry {name}")
    width = name.removeprefix("mobilenetv2_")
    if name.startswith("mobilenetv2_") and _is_number(width) and float(width) in MOBILENETV2_WIDTHS:
        return mobilenet_v2(float(width))
    known = ", ".join(entry.name for entry in list_zoo())
    raise UserError(f"unknown zoo model {name!r}; known models: {known} (see `proxyless zoo list`)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
