"""`proxyless train`: flags in, `proxyless.train.train` called, lines out."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from proxyless.arch_kinds import load_any_arch
from proxyless.cli.common import (
    add_command,
    add_data_flags,
    add_run_flags,
    check_extras,
    command_of,
    resolve_net,
    resumed_args,
    use_threads,
)
from proxyless.data import check_limit, limit_train, load_splits, native_image_size
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist
from proxyless.train import TrainConfig, train_net

log = logging.getLogger("proxyless")

EXAMPLES = """\
  proxyless train --zoo mobilenetv2_0.35 --epochs 1              # embedded CIFAR-10 sample
  proxyless train --zoo mobilenetv2_0.35 --epochs 1 --limit-images 500   # ... a quick trial on 500 of its images
  proxyless train --zoo proxyless_cifar --data cifar10:~/data --device cuda   # the paper's CIFAR-10 net
  proxyless train --arch runs/search/arch.json --data ~/cifar-10-batches-py --epochs 100
  proxyless train --zoo proxyless_mobile --data ~/imagenet --device cuda --amp --batch-size 256
  proxyless train --resume runs/train-mobilenetv2_0.35           # continue an interrupted run
  proxyless train --resume runs/train-mobilenetv2_0.35 --epochs 20   # ... for more epochs
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "train", "Train a network (arch.json or zoo model) from scratch.", EXAMPLES)
    source = parser.add_argument_group("network")
    source.add_argument("--arch", help="arch.json (or an original ProxylessNAS *.config.json)")
    source.add_argument("--zoo", help="zoo model name, adapted to the data's image size and classes")
    data = add_data_flags(parser)
    data.add_argument("--limit-images", type=int,
                      help="train on only this many of the training images (quick trials; the test set whole)")
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
    add_run_flags(parser, "train")
    parser.set_defaults(handler=run, resume_hint="continue with `proxyless train --resume RUN_DIR`")


def run(args: argparse.Namespace) -> int:
    if args.resume:  # the network as the run trains it (already fitted to the data), and its saved flags
        args = resumed_args(args, "train")
        arch, adaptable = load_any_arch(Path(args.resume) / "arch.json"), False
    else:
        arch, adaptable = resolve_net(args.arch, args.zoo)
    check_extras(args)
    use_threads(args)
    check_limit(args.limit_images)  # before the decode of a large folder
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, warmup_epochs=args.warmup_epochs, seed=args.seed,
        device=args.device, amp=args.amp, channels_last=not args.channels_first,
        num_workers=args.workers, progress=not args.no_progress, tensorboard=args.tensorboard,
        checkpoint_every=args.checkpoint_every,
    )
    # a zoo net follows the data's image size; an arch.json fixes it (and the data must fit)
    image_size = arch.input_size
    if adaptable:
        image_size = native_image_size(args.data) or args.image_size or image_size
    splits = limit_train(load_splits(args.data, image_size, seed=args.seed, progress=config.progress),
                         args.limit_images, args.seed)
    dist = Dist.from_env(resolve_device(args.device))  # torchrun: this process's rank and device
    try:
        if not dist.main:
            log.setLevel(logging.WARNING)
        result = train_net(arch, splits, config, out=args.resume or args.out, resume=bool(args.resume),
                       overwrite=args.overwrite, adapt=adaptable, dist=dist, command=command_of(args))
    finally:
        dist.close(destroy=False)  # the process ends right after (`proxyless.cli.entry`)
    if dist.main:
        log.info("test top-1 %.4f  top-5 %.4f  params %d  MACs %d", result.test_top1, result.test_top5,
                 result.record["params"], result.record["macs"])
        log.info("wrote %s/{checkpoint.pt,weights.safetensors,metrics.csv,result.json}", result.run_dir)
    return 0

