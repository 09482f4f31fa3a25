"""proxyless: hardware-aware neural architecture search the ProxylessNAS way.

The pipeline, each stage a plain function or class with a typed config, each returning a record:

    space    get_space / load_space -> SearchSpace; TreeSpace (tree cells); Arch, load_arch / save_arch (arch.json)
    data     load_splits (train/valid/test datasets), load_search_data (with a held-out valid split),
             limit_train (only N training images, for a quick trial)
    search   search_arch(space, data, SearchConfig, latency=LatencyTarget) -> SearchResult;
             search_family(..., targets=[LatencyTarget, ...]) -> [SearchResult]: one supernet, several targets
    derive   derive_from_run(run_dir) -> DeriveResult
    net      build_net(arch) -> nn.Module (an MBConv Arch, or a tree-cell TreeArch such as the zoo's proxyless_cifar)
    train    train_net(arch, data, TrainConfig) -> TrainResult; evaluate_net(arch, weights, data)
    latency  build_lut, load_lut, predict_latency, latency_range, measure_archs (MeasureConfig)
    export   load_trained(arch, weights) -> net; export_net(net, "onnx" | "torchscript" | "torch-export", out)

Infrastructure (atomic files, checkpoints, signals, torchrun, the resumable-run engine) is in
`proxyless.infra`; the command line, a thin layer over these functions, in `proxyless.cli`.
"""

from proxyless.arch import Arch, ArchError, load_arch, save_arch
from proxyless.data import Splits, limit_train, load_splits
from proxyless.errors import UserError
from proxyless.export import ExportResult, export_net, load_trained
from proxyless.latency.lut import load_lut
from proxyless.latency.measure import MeasureConfig, build_lut, measure_archs
from proxyless.latency.predict import predict_latency
from proxyless.net import ProxylessNet, build_net
from proxyless.ops import CANDIDATE_OPS, MBConv, OpSpec, Skip, Zero, format_op, parse_op
from proxyless.search.hardware import LatencyTarget, latency_range
from proxyless.search.loop import SearchConfig
from proxyless.search.pipeline import (
    DeriveResult,
    SearchResult,
    derive_from_run,
    load_search_data,
    search_arch,
    search_family,
)
from proxyless.space import PRESETS, SearchSpace, SpaceError, Stage, get_space, load_space
from proxyless.train import TrainConfig, TrainResult, evaluate_net, train_net
from proxyless.tree.arch import TreeArch
from proxyless.tree.space import TreeSpace

__version__ = "0.1.0"

__all__ = [
    "CANDIDATE_OPS",
    "PRESETS",
    "Arch",
    "ArchError",
    "DeriveResult",
    "ExportResult",
    "LatencyTarget",
    "MBConv",
    "MeasureConfig",
    "OpSpec",
    "ProxylessNet",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "Skip",
    "SpaceError",
    "Splits",
    "Stage",
    "TrainConfig",
    "TrainResult",
    "TreeArch",
    "TreeSpace",
    "UserError",
    "Zero",
    "build_lut",
    "build_net",
    "derive_from_run",
    "evaluate_net",
    "export_net",
    "format_op",
    "get_space",
    "latency_range",
    "limit_train",
    "load_arch",
    "load_lut",
    "load_search_data",
    "load_space",
    "load_splits",
    "load_trained",
    "measure_archs",
    "parse_op",
    "predict_latency",
    "save_arch",
    "search_arch",
    "search_family",
    "train_net",
]
