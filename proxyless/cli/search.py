"""`proxyless search` and `proxyless derive`: flags in, `proxyless.search.pipeline` called, lines out."""

from __future__ import annotations

import argparse
import logging

from proxyless.arch_kinds import get_any_space
from proxyless.cli.common import (
    add_command,
    add_data_flags,
    add_run_flags,
    check_extras,
    command_of,
    resumed_args,
    use_threads,
)
from proxyless.errors import UserError
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist
from proxyless.infra.settings import RESIDUAL_INITS, residual_init_name
from proxyless.latency.loss import KINDS
from proxyless.search.hardware import CONTROLLERS, DERIVE_DEPTHS, LatencyTarget, describe_latency, parse_target
from proxyless.search.loop import WEIGHTS, SearchConfig
from proxyless.search.pipeline import SearchResult, derive_from_run, load_search_data, search_arch, search_family
from proxyless.search.sampling import SAMPLINGS

log = logging.getLogger("proxyless")

EXAMPLES = """\
  proxyless search                                   # short search: embedded sample, proxyless-cifar, CPU
  proxyless search --epochs 30 --warmup-epochs 10 --data ~/data/cifar-10-batches-py --out runs/cifar
  proxyless search --strategy reinforce --space my_space.yaml --data ~/images
  proxyless search --lut lut_cifar.json --target-latency 40ms   # hardware-aware: land at 40 ms
  proxyless search --lut lut_cifar.json --target-latency 30ms 40ms 50ms   # one supernet, a net per target
  proxyless search --space proxyless-imagenet --lut cpu.json mobile_trim.yaml --target-latency 13ms 78ms   # per device
  proxyless search --resume runs/cifar               # continue an interrupted search with its saved settings
  proxyless search --resume runs/cifar --epochs 8    # ... and search for more epochs than it was started with
  proxyless derive runs/cifar --inherit-weights      # re-derive arch.json (and weights) from a checkpoint
  proxyless derive runs/family --target 40ms         # ... of one target of a search for several
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "search", "Search an architecture with a binarized supernet (ProxylessNAS).",
                         EXAMPLES)
    defaults = SearchConfig()
    parser.add_argument("--space", default="proxyless-cifar", help="preset name or .yaml/.json space file")
    add_data_flags(parser)
    group = parser.add_argument_group("search")
    group.add_argument("--strategy", choices=("gradient", "reinforce"), default=defaults.strategy)
    group.add_argument("--mode", choices=("two", "full"), default=defaults.mode,
                       help="gradient strategy: binarized two-path (memory of one path) or full DARTS-style mixing")
    group.add_argument("--epochs", type=int, default=defaults.epochs)
    group.add_argument("--warmup-epochs", type=int, help="weight-only epochs first (default: a quarter of --epochs, "
                                                          "rounded down, so that a short run still searches)")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--lr", type=float, default=defaults.lr, help="weight learning rate (SGD-Nesterov, cosine)")
    group.add_argument("--arch-lr", type=float, help="α learning rate (Adam, β1 = 0; default: scaled so that α can "
                                                     "move over the search, however short)")
    group.add_argument("--arch-every", type=int, help="an arch step every N weight steps (default: as often as gives "
                                                      "100 arch steps, every 2nd to 5th)")
    group.add_argument("--weights", choices=WEIGHTS, default=defaults.weights,
                       help="independent: each candidate its own weights (the paper); entangled: the candidates of a "
                            "layer share one weight set (k3 the centre of k5, e3 the first channels of e6)")
    group.add_argument("--sampling", choices=SAMPLINGS, default=defaults.sampling,
                       help="warmup paths: uniform, fair (each candidate of each layer once per cycle), or "
                            "fair-largest (every other step the path with the most weights, fair between)")
    group.add_argument("--residual-init", type=residual_init_word, default=residual_init_name(defaults.residual_init),
                       help="the scale residual branches of shape-keeping candidates start at: zero (their project "
                            "BN at 0: the identity), unit (at 1, as the paper's code) or a number between")
    group.add_argument("--full-depth-weights", action="store_true",
                       help="weight steps never take a layer's identity (zero, or a skip that keeps the shape), so "
                            "the weights train at full depth and only the architecture steps try a layer away")
    group.add_argument("--bn-batches", type=int, default=defaults.bn_batches,
                       help="train batches that recalibrate BN on the argmax path before each epoch's valid top-1")
    group.add_argument("--valid-size", type=float, default=0.2, help="held-out part of the training data for α")
    group.add_argument("--limit-images", type=int, help="use only this many training images (quick trials)")
    group.add_argument("--seed", type=int, default=defaults.seed)
    add_latency_flags(parser)
    add_run_flags(parser, "search")
    parser.set_defaults(handler=run_search, resume_hint="continue with `proxyless search --resume RUN_DIR`")

    derive_parser = add_command(subparsers, "derive", "Derive arch.json from a search run (path-level pruning).",
                                EXAMPLES)
    derive_parser.add_argument("run_dir", help="search run directory (with checkpoint.pt)")
    derive_parser.add_argument("--out", help="where to write the arch.json (default: RUN_DIR/arch.json)")
    derive_parser.add_argument("--inherit-weights", action="store_true",
                               help="also write the kept paths' supernet weights as derived_weights.safetensors")
    derive_parser.add_argument("--target", metavar="LABEL",
                               help="of a search for several latency targets, the one to derive (e.g. 46ms); "
                                    "written into RUN_DIR/LABEL/")
    add_measured_derive_flag(derive_parser)
    add_derive_depth_flag(derive_parser, default=None)
    derive_parser.set_defaults(handler=run_derive)


def add_latency_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("latency (hardware-aware search)")
    group.add_argument("--lut", nargs="+", metavar="LUT",
                       help="latency table of the target device (`proxyless lut build`, or mobile .yaml); with "
                            "several targets, one table for all or one per target, in order (a family across devices)")
    group.add_argument("--target-latency", nargs="+", metavar="MS",
                       help="target latency of the searched net, e.g. 12ms (needs --lut); several (30ms 40ms 50ms): "
                            "one supernet trained once, a net per target in RUN_DIR/30ms/, ...")
    group.add_argument("--latency-loss", choices=KINDS, default="add",
                       help="add: CE + λ(E/T−1); mul: CE·(E/T)^λ; log: log CE + λ log(E/T); "
                            "hinge: CE + λ max(0, E/T−1)")
    group.add_argument("--latency-weight", type=float, default=0.1, help="initial λ (adapted during the search)")
    group.add_argument("--latency-adapt-rate", type=float, default=0.5,
                       help="λ ← λ·exp(rate·clip((L−T)/T, ±0.2)) after each arch step, L the derived net's latency "
                            "(0: fixed λ)")
    group.add_argument("--latency-controller", choices=CONTROLLERS, default="one-sided",
                       help="one-sided: λ only penalises latency; two-sided: λ may turn negative and push a net "
                            "that stays under the target up (dual ascent on L = T)")
    group.add_argument("--reward-latency", choices=("predicted", "measured"), default="predicted",
                       help="reinforce: the latency in the reward, from the table or timed on this machine")
    group.add_argument("--no-measure", action="store_true", help="do not time the derived net after the search")
    group.add_argument("--derive-top", type=int, default=0, metavar="K",
                       help="keep the best of the K most probable nets within the target band (and the band rule's "
                            "pick), as the trained supernet scores them on 2,000 valid images (0: the rule alone)")
    add_measured_derive_flag(group)
    add_derive_depth_flag(group, default="alpha")


def add_derive_depth_flag(parser, default: str | None) -> None:
    parser.add_argument("--derive-depth", choices=DERIVE_DEPTHS, default=default,
                        help="alpha: the derived net skips the layers α skips; deepest: of the nets in the target "
                             "band, those with the fewest skips (zero, or skip at any stride), α choosing their ops "
                             "(on NAS-Bench-Macro α kept too many skips: README, Search quality)"
                             + ("" if default else "; default: the search's own"))


def add_measured_derive_flag(parser) -> None:
    parser.add_argument("--measured-derive", action="store_true",
                        help="time the derived net on this machine and, when it is more than 2.5%% off the target, "
                             "correct the table by that measurement and derive again (up to 3 nets)")


# what a search started before these flags existed ran with, so that resuming it keeps it
BEFORE_FLAGS = {"weights": "independent", "sampling": "uniform", "residual_init": "zero"}


def run_search(args: argparse.Namespace) -> int:
    if args.resume:
        args = resumed_args(args, "search", before=BEFORE_FLAGS)
    check_extras(args)
    use_threads(args)
    config = SearchConfig(
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size, lr=args.lr,
        arch_lr=args.arch_lr, arch_every=args.arch_every, strategy=args.strategy, mode=args.mode, seed=args.seed,
        weights=args.weights, sampling=args.sampling, residual_init=residual_init_scale(args.residual_init),
        full_depth_weights=args.full_depth_weights, bn_batches=args.bn_batches,
        checkpoint_every=args.checkpoint_every, num_workers=args.workers, progress=not args.no_progress,
        tensorboard=args.tensorboard,
    )
    args.warmup_epochs = config.warmup_epochs  # saved resolved, so that a resume with more epochs keeps it
    targets = latency_targets(args)
    dist = Dist.from_env(resolve_device(args.device))  # torchrun: this process's rank and device
    try:
        if not dist.main:
            log.setLevel(logging.WARNING)
        space = get_any_space(args.space)
        data = load_search_data(args.data, space.input_size, args.valid_size, args.limit_images, args.seed,
                                progress=config.progress)
        where = dict(out=args.resume or args.out, resume=bool(args.resume), overwrite=args.overwrite, dist=dist,
                     command=command_of(args))
        results = (search_family(space, data, config, targets=targets, **where) if len(targets) > 1
                   else [search_arch(space, data, config, latency=targets[0] if targets else None, **where)])
    finally:
        dist.close(destroy=False)  # the process ends right after (`proxyless.cli.entry`)
    if dist.main:
        for result in results:
            print_result(result, args.data, len(results) > 1)
    return 0


def print_result(result: SearchResult, data: str, member: bool) -> None:
    if member:
        print(f"\n-- target {result.latency['target_ms']:g} ms --")
    print(result.arch.summary())
    for line in describe_latency(result.latency) if result.latency else []:
        print(line)
    print(f"wrote {result.arch_json}  (train it: proxyless train --arch {result.arch_json} --data {data})")


def residual_init_scale(text: str) -> float:
    """`--residual-init`'s value as a scale: zero -> 0, unit -> 1, '0.2' -> 0.2 (SearchConfig checks the range)."""
    if text in RESIDUAL_INITS:
        return RESIDUAL_INITS[text]
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be zero, unit or a scale in [0, 1], got {text!r}") from None


def residual_init_word(text: str) -> str:
    """`--residual-init`'s value in one spelling ('0' -> 'zero', '0.20' -> '0.2'), so a resume compares like."""
    return residual_init_name(residual_init_scale(text))


def latency_targets(args: argparse.Namespace) -> list[LatencyTarget]:
    """The --lut/--target-latency flags as LatencyTargets: none without them, one per target given."""
    given = args.target_latency
    if isinstance(given, str):  # saved by a search started before several targets were allowed
        given = [given]
    if args.lut is None and given is None:
        if args.measured_derive:
            raise UserError("--measured-derive needs --lut and --target-latency")
        return []
    if args.lut is None or given is None:
        raise UserError("--lut and --target-latency go together: the table predicts, the target says how fast")
    luts = [args.lut] if isinstance(args.lut, str) else args.lut  # a str: saved by a search before several tables
    if len(luts) not in (1, len(given)):
        raise UserError(f"--lut: {len(luts)} tables for {len(given)} targets; give one table for every target, "
                        "or one per target in the order of --target-latency")
    return [LatencyTarget(lut=lut, target_ms=parse_target(text), loss=args.latency_loss,
                          weight=args.latency_weight, adapt_rate=args.latency_adapt_rate,
                          controller=args.latency_controller,
                          reward_latency=args.reward_latency, measure=not args.no_measure,
                          measured_derive=args.measured_derive, derive_top=args.derive_top,
                          derive_depth=args.derive_depth)
            for text, lut in zip(given, luts * len(given) if len(luts) == 1 else luts)]


def run_derive(args: argparse.Namespace) -> int:
    result = derive_from_run(args.run_dir, out=args.out, inherit=args.inherit_weights,
                             measured_derive=args.measured_derive, member=args.target, derive_depth=args.derive_depth)
    print(f"derived by {result.derived_by}")
    print(result.arch.summary())
    for line in describe_latency(result.latency) if result.latency and args.measured_derive else []:
        print(line)
    print(f"wrote {result.arch_json}")
    if result.weights is not None:
        print(f"wrote {result.weights}")
    return 0
