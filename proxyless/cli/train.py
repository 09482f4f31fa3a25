"""`proxyless train`: train a standalone network from scratch."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from proxyless.cli.common import add_command, fit_arch_to_data, prepare_run_dir, resolve_arch
from proxyless.data import load_splits, native_image_size
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist
from proxyless.net import build_net
from proxyless.train import TrainConfig, Trainer

log = logging.getLogger("proxyless")

EXAMPLES = """\
  proxyless train --zoo mobilenetv2_0.35 --epochs 1              # embedded CIFAR-10 sample
  proxyless train --arch runs/search/arch.json --data ~/cifar-10-batches-py --epochs 100
  proxyless train --zoo proxyless_mobile --data ~/imagenet --device cuda --amp --batch-size 256
  proxyless train --zoo mobilenetv2_0.5 --out runs/mbv2 --resume  # continue an interrupted run
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "train", "Train a network (arch.json or zoo model) from scratch.", EXAMPLES)
    source = parser.add_argument_group("network")
    source.add_argument("--arch", help="arch.json (or an original ProxylessNAS *.config.json)")
    source.add_argument("--zoo", help="zoo model name, adapted to the data's image size and classes")
    add_data_flags(parser)
    recipe = parser.add_argument_group("recipe")
    defaults = TrainConfig()
    recipe.add_argument("--epochs", type=int, default=defaults.epochs)
    recipe.add_argument("--batch-size", type=int, default=defaults.batch_size)
    recipe.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    recipe.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    recipe.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    recipe.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs)
    recipe.add_argument("--seed", type=int, default=defaults.seed)
    recipe.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    recipe.add_argument("--channels-first", action="store_true", help="disable channels-last memory format")
    add_run_flags(parser)
    parser.set_defaults(handler=run, resume_hint="continue by running the same command with --resume")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", default="sample",
                       help="'sample' (embedded CIFAR-10 sample), a cifar-10-batches-py dir, "
                            "'cifar10:DIR' (download into DIR), or an ImageFolder dir")
    group.add_argument("--image-size", type=int, help="input size for ImageFolder data (default: the net's)")
    group.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run directory")
    group.add_argument("--out", help="run directory (default: runs/<command>-<name>, numbered if taken)")
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    group.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                       help="also checkpoint every STEPS steps inside an epoch (0: end of epoch only)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    group.add_argument("--tensorboard", action="store_true",
                       help="also log the per-epoch metrics as TensorBoard scalars in the run directory")


def run(args: argparse.Namespace) -> int:
    arch, adaptable = resolve_arch(args.arch, args.zoo)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, warmup_epochs=args.warmup_epochs, seed=args.seed,
        device=args.device, amp=args.amp, channels_last=not args.channels_first,
        num_workers=args.workers, progress=not args.no_progress, tensorboard=args.tensorboard,
        checkpoint_every=args.checkpoint_every,
    )
    # a zoo net follows the data's image size; an arch.json fixes it (and the data must fit)
    image_size = arch.space.input_size
    if adaptable:
        image_size = native_image_size(args.data) or args.image_size or image_size
    splits = load_splits(args.data, image_size, seed=args.seed, progress=config.progress)
    arch = fit_arch_to_data(arch, adaptable, splits.image_size, len(splits.classes))
    dist = Dist.from_env(resolve_device(args.device))  # torchrun: this process's rank and device
    try:
        if not dist.main:
            log.setLevel(logging.WARNING)
        torch.manual_seed(args.seed)  # the initial weights depend on the seed too (the same on every rank)
        trainer = Trainer(arch, build_net(arch), splits, config, dist)
        name = f"train-{arch.name or arch.space.name}"
        run_dir = Path(dist.on_main(lambda: str(prepare_run_dir(args.out, name, args.resume, args.overwrite))))
        result = trainer.run(run_dir, resume=args.resume)
    finally:
        dist.close()
    if dist.main:
        log.info("test top-1 %.4f  top-5 %.4f  params %d  MACs %d", result["test_top1"], result["test_top5"],
                 result["params"], result["macs"])
        log.info("wrote %s/{checkpoint.pt,weights.safetensors,metrics.csv,result.json}", run_dir)
    return 0
