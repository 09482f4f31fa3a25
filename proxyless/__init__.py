"""proxyless: hardware-aware neural architecture search the ProxylessNAS way."""

from proxyless.arch import Arch, ArchError, load_arch, save_arch
from proxyless.net import ProxylessNet, build_net
from proxyless.ops import CANDIDATE_OPS, MBConv, OpSpec, Zero, format_op, parse_op
from proxyless.space import PRESETS, SearchSpace, SpaceError, Stage, get_space, load_space

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "ArchError",
    "CANDIDATE_OPS",
    "MBConv",
    "OpSpec",
    "PRESETS",
    "ProxylessNet",
    "SearchSpace",
    "SpaceError",
    "Stage",
    "Zero",
    "build_net",
    "format_op",
    "get_space",
    "load_arch",
    "load_space",
    "parse_op",
    "save_arch",
]
