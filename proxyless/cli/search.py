"""`proxyless search` and `proxyless derive`: architecture search on the target data and device."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Subset

from proxyless.arch import Arch, save_arch
from proxyless.infra.atomic import atomic_write_text, read_json
from proxyless.infra.checkpoint import load_checkpoint, save_weights
from proxyless.cli.common import add_command, prepare_run_dir
from proxyless.cli.search_latency import (
    add_latency_flags,
    add_measured_derive_flag,
    derive_on_device,
    latency_objective,
    report_latency,
    reward_for,
)
from proxyless.cli.train import add_data_flags
from proxyless.data import load_splits
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist
from proxyless.errors import UserError
from proxyless.net import build_net
from proxyless.search.derive import argmax_rule, inherit_weights
from proxyless.search.loop import SearchConfig, Searcher, write_search_config
from proxyless.search.objective import LatencyObjective
from proxyless.search.strategies import GradientStrategy, ReinforceStrategy
from proxyless.search.supernet import SuperNet
from proxyless.space import SearchSpace, get_space

log = logging.getLogger("proxyless")

EXAMPLES = """\
  proxyless search                                   # short search: embedded sample, proxyless-cifar, CPU
  proxyless search --epochs 30 --warmup-epochs 10 --data ~/data/cifar-10-batches-py --out runs/cifar
  proxyless search --strategy reinforce --space my_space.yaml --data ~/images
  proxyless search --lut lut_cifar.json --target-latency 40ms   # hardware-aware: land at 40 ms
  proxyless search --resume runs/cifar               # continue an interrupted search
  proxyless derive runs/cifar --inherit-weights      # re-derive arch.json (and weights) from a checkpoint
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "search", "Search an architecture with a binarized supernet (ProxylessNAS).", EXAMPLES)
    defaults = SearchConfig()
    parser.add_argument("--space", default="proxyless-cifar", help="preset name or .yaml/.json space file")
    add_data_flags(parser)
    group = parser.add_argument_group("search")
    group.add_argument("--strategy", choices=("gradient", "reinforce"), default=defaults.strategy)
    group.add_argument("--mode", choices=("two", "full"), default=defaults.mode,
                       help="gradient strategy: binarized two-path (memory of one path) or full DARTS-style mixing")
    group.add_argument("--epochs", type=int, default=defaults.epochs)
    group.add_argument("--warmup-epochs", type=int, default=defaults.warmup_epochs, help="weight-only epochs first")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--lr", type=float, default=defaults.lr, help="weight learning rate (SGD-Nesterov, cosine)")
    group.add_argument("--arch-lr", type=float, default=defaults.arch_lr, help="α learning rate (Adam, β1 = 0)")
    group.add_argument("--arch-every", type=int, default=defaults.arch_every, help="an arch step every N weight steps")
    group.add_argument("--valid-size", type=float, default=0.2, help="held-out part of the training data for α")
    group.add_argument("--limit-images", type=int, help="use only this many training images (quick trials)")
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every,
                       help="also checkpoint every N steps inside an epoch (0: end of epoch only)")
    add_latency_flags(parser)
    runs = parser.add_argument_group("run directory")
    runs.add_argument("--out", help="run directory (default: runs/search-<space>, numbered if taken)")
    runs.add_argument("--resume", metavar="RUN_DIR", help="continue the search in RUN_DIR with its saved settings")
    runs.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    runs.add_argument("--no-progress", action="store_true", help="no progress bars")
    runs.add_argument("--tensorboard", action="store_true",
                      help="also log the per-epoch metrics as TensorBoard scalars in the run directory")
    parser.set_defaults(handler=run_search, resume_hint="continue with `proxyless search --resume RUN_DIR`")

    derive = add_command(subparsers, "derive", "Derive arch.json from a search run (path-level pruning).", EXAMPLES)
    derive.add_argument("run_dir", help="search run directory (with checkpoint.pt)")
    derive.add_argument("--out", help="where to write the arch.json (default: RUN_DIR/arch.json)")
    derive.add_argument("--inherit-weights", action="store_true",
                        help="also write the kept paths' supernet weights as derived_weights.safetensors")
    add_measured_derive_flag(derive)
    derive.set_defaults(handler=run_derive)


def run_search(args: argparse.Namespace) -> int:
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if args.resume:
        args = _saved_args(args)
    config = SearchConfig(
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size, lr=args.lr,
        arch_lr=args.arch_lr, arch_every=args.arch_every, strategy=args.strategy, mode=args.mode, seed=args.seed,
        checkpoint_every=args.checkpoint_every, num_workers=args.workers, progress=not args.no_progress,
        tensorboard=args.tensorboard,
    )
    dist = Dist.from_env(resolve_device(args.device))  # torchrun: this process's rank and device
    try:
        return _search(args, config, dist)
    finally:
        dist.close()


def _search(args: argparse.Namespace, config: SearchConfig, dist: Dist) -> int:
    if not dist.main:
        log.setLevel(logging.WARNING)
    deployed_space = get_space(args.space)  # latency is predicted for this space; the data may change its classes
    train, valid, space, source = _search_data(args, deployed_space)
    torch.manual_seed(config.seed)
    supernet = SuperNet(space)
    objective = latency_objective(args, supernet, deployed_space)
    searcher = Searcher(supernet, _strategy(supernet, config, objective, dist), train, valid, config, dist.device,
                        derive=objective.derive if objective else None, dist=dist, source=source)

    def make_run_dir() -> str:
        if args.resume:
            return args.resume
        run_dir = prepare_run_dir(args.out, f"search-{space.name}", False, args.overwrite)
        write_search_config(run_dir, config, space.to_dict(), source)
        atomic_write_text(run_dir / "args.json", json.dumps(vars(args), default=str, indent=2) + "\n")
        return str(run_dir)

    run_dir = Path(dist.on_main(make_run_dir))
    result = searcher.run(run_dir, resume=bool(args.resume))
    if not dist.main:  # the files and the latency report are rank 0's
        return 0
    measured = derive_on_device(objective, supernet) if objective is not None and args.measured_derive else None
    if measured is not None:  # the table corrected by measurement: the kept net may differ from the search's
        arch = supernet.arch_of(measured.indices, name=result["arch"].name)
        save_arch(arch, run_dir / "arch.json")
        result.update(arch=arch, derived_by=measured.how)
        atomic_write_text(run_dir / "result.json", json.dumps({**result, "arch": arch.op_strings()}, indent=2) + "\n")
    print(result["arch"].summary())
    if objective is not None:
        argmax_ms = objective.model.of_indices(supernet.argmax())
        report_latency(objective, result["arch"], result["derived_by"], argmax_ms, run_dir, not args.no_measure, measured)
    print(f"wrote {result['arch_json']}  (train it: proxyless train --arch {result['arch_json']} --data {args.data})")
    return 0


def _saved_args(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments a run was started with, from RUN_DIR/args.json."""
    if not (Path(args.resume) / "args.json").is_file():
        raise UserError(f"--resume {args.resume}: no args.json there; is it a `proxyless search` run directory?")
    values = _read_args(Path(args.resume))
    # flags added since the run started keep their defaults
    return argparse.Namespace(**{**vars(args), **values, "resume": args.resume, "no_progress": args.no_progress})


def _read_args(run_dir: Path) -> dict:
    """RUN_DIR/args.json: the arguments a search was started with."""
    saved = run_dir / "args.json"
    values = read_json(saved, UserError, "search's saved arguments")
    if not isinstance(values, dict):
        raise UserError(f"{saved}: expected the search's arguments as a JSON object; the run directory is damaged")
    return values


def _search_data(args: argparse.Namespace, space: SearchSpace):
    """(train, valid, space fitted to the data's classes, description)."""
    if not 0 < args.valid_size < 1:
        raise UserError(f"--valid-size must be a fraction in (0, 1), got {args.valid_size}")
    splits = load_splits(args.data, space.input_size, valid_size=args.valid_size, seed=args.seed,
                         progress=not args.no_progress)
    if len(splits.classes) != space.num_classes:
        log.info("space %s: classifier set to the data's %d classes", space.name, len(splits.classes))
        space = replace(space, num_classes=len(splits.classes))
    train, source = splits.train, splits.source
    if args.limit_images is not None:
        if not 0 < args.limit_images <= len(train):
            raise UserError(f"--limit-images must be in 1..{len(train)}, got {args.limit_images}")
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[: args.limit_images]
        train = Subset(train, sorted(keep.tolist()))
        source += f"; {args.limit_images} training images used"
    return train, splits.valid, space, source


def _strategy(supernet: SuperNet, config: SearchConfig, objective: LatencyObjective | None, dist: Dist):
    if config.strategy == "reinforce":
        return ReinforceStrategy(supernet, reward=reward_for(objective), lr=config.arch_lr, dist=dist)
    return GradientStrategy(supernet, lr=config.arch_lr, mode=config.mode, arch_loss=objective, dist=dist)


def search_objective(run_dir: Path, supernet: SuperNet) -> LatencyObjective | None:
    """The search's latency objective when it had a target (rebuilt from its args.json), else None."""
    values = _read_args(run_dir) if (run_dir / "args.json").is_file() else {}
    if values.get("lut") and values.get("target_latency"):
        return latency_objective(argparse.Namespace(**values), supernet, get_space(values["space"]))
    return None


def _update_latency_report(run_dir: Path, objective: LatencyObjective, arch, how: str) -> None:
    """Re-derived in place: latency.json gets the new net's prediction; a measurement of the old net is dropped."""
    path = run_dir / "latency.json"
    if not path.is_file():  # the search stopped before writing one; `proxyless search --resume` will
        return
    report = json.loads(path.read_text())
    for stale in ("measured_ms", "measured_std_ms", "backend", "not_measured"):
        report.pop(stale, None)
    predicted = objective.model.of_arch(Arch(objective.model.space, arch.ops))
    report.update(predicted_ms=predicted, error=predicted / objective.target - 1, on_target=objective.on_target(predicted),
                  derived_by=how)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


def run_derive(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    if state.get("kind") != "search":
        raise UserError(f"{run_dir}/checkpoint.pt is not a search checkpoint; derive needs a `proxyless search` run")
    supernet = SuperNet(SearchSpace.from_dict(state["space"], where=str(run_dir)))
    supernet.load_state_dict(state["supernet"])
    objective = search_objective(run_dir, supernet)
    if args.measured_derive and objective is None:
        raise UserError(f"--measured-derive needs a search with a latency target; {run_dir} had no --lut/--target-latency")
    measured = derive_on_device(objective, supernet) if args.measured_derive else None
    if measured is not None:
        indices, how = measured.indices, measured.how
    else:
        indices, how = (objective.derive if objective else argmax_rule)(supernet)
    arch = supernet.arch_of(indices, name=f"searched-{run_dir.name}")
    print(f"derived by {how}")
    out = Path(args.out) if args.out else run_dir / "arch.json"
    save_arch(arch, out)
    if measured is not None and not args.out:
        argmax_ms = objective.model.of_indices(supernet.argmax())
        report_latency(objective, arch, how, argmax_ms, run_dir, measure=False, measured=measured)
    elif objective and not args.out:
        _update_latency_report(run_dir, objective, arch, how)
    print(arch.summary())
    print(f"wrote {out}")
    if args.inherit_weights:
        net = build_net(arch)
        inherit_weights(supernet, net)
        save_weights(net, run_dir / "derived_weights.safetensors")
        print(f"wrote {run_dir / 'derived_weights.safetensors'}")
    return 0
