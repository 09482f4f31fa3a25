"""How fast do zero-initialised residual branches open, in a net alone and in the supernet?

The 68 ms supernets of `search_vs_baselines.py` score a net with its optional layers (those that may be
`zero`) all `zero` as high as with all of them `mb_k7_e6` (`supernet_vs_trained_w75e18{,f}.md`): after 18
search epochs the project-BN |γ| of those layers' candidates, which scales each residual branch and
starts at zero in the supernet (`--residual-init zero`), is still 0.01-0.05, so the supernet barely uses
those layers and cannot rank depth. The trained nets do not show whether that is the supernet's doing:
a standalone net starts its γ at one.

This script trains, from the same residual scale (`--init-scale`, default zero), on the embedded CIFAR-10
sample, with the same batches in the same order:

    standalone     one net alone (every layer its `--op`, `zero` nowhere)
    fixed          the entangled supernet, always on that net's path
    fair-largest   the supernet with the search's warmup sampling of that name (`search/sampling.py`)
    fair           ... strictly fair
    uniform        ... uniform

and prints, every `--every` steps, the mean |γ| of that net's residual branches (in the supernet: its
path's candidates) and of the largest path's, with the mean training loss since the last row.

    python benchmarks/residual_scale.py --steps 400     # about 20 minutes on one thread

Writes benchmarks/results/residual_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.data.sample import load_sample  # noqa: E402
from proxyless.layers import Residual  # noqa: E402
from proxyless.net import build_net, init_weights  # noqa: E402
from proxyless.optim import make_sgd  # noqa: E402
from proxyless.search.sampling import fair_largest_plan, fair_plan  # noqa: E402
from proxyless.search.supernet import SuperNet  # noqa: E402
from proxyless.space import get_space  # noqa: E402

VARIANTS = ("standalone", "fixed", "fair-largest", "fair", "uniform")
MEAN, STD = 0.5, 0.25  # a plain normalisation of [0, 1] pixels: the same for every variant


def sample_batches(batch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of the embedded sample's training images (B, 3, 32, 32), channels-last, forever."""
    train = load_sample().train
    images = torch.from_numpy(train.images).permute(0, 3, 1, 2).float().div(255).sub(MEAN).div(STD)
    labels = torch.from_numpy(train.labels).long()
    generator = torch.Generator().manual_seed(seed)
    while True:
        for rows in torch.randperm(len(images), generator=generator).split(batch):
            if len(rows) == batch:
                yield images[rows].contiguous(memory_format=torch.channels_last), labels[rows]


def path_scale(supernet: SuperNet, plan: list[int]) -> float:
    """Mean |γ| of the project BNs of `plan`'s residual branches (its shape-keeping, non-zero layers)."""
    scales = [float(mixed.shared.norms[str(mixed.specs[i])].project.weight.abs().mean())
              for block, mixed, i in zip(supernet.blocks, supernet.mixed_ops(), plan)
              if block.shortcut and not mixed.is_zero(i)]
    return statistics.fmean(scales)


def train_variant(variant: str, space_name: str, op: str, args: argparse.Namespace) -> list[dict]:
    """`args.steps` SGD steps of one variant; a row every `args.every` steps."""
    torch.manual_seed(args.seed)
    supernet = SuperNet(get_space(space_name), entangled=True, residual_init=args.init_scale)
    mixed = supernet.mixed_ops()
    names = [[str(spec) for spec in m.specs] for m in mixed]
    if any(op not in layer for layer in names):
        raise SystemExit(f"--op {op} is not a candidate of every layer of {space_name}")
    path, largest = [layer.index(op) for layer in names], [m.largest() for m in mixed]
    sizes, generator = [len(m.specs) for m in mixed], torch.Generator().manual_seed(args.seed)
    planners: dict[str, Callable[[int], list[int]]] = {
        "fixed": lambda step: path,
        "fair-largest": lambda step: fair_largest_plan(sizes, largest, args.seed, step),
        "fair": lambda step: fair_plan(sizes, args.seed, step),
        "uniform": lambda step: supernet.sample_single(generator, uniform=True),  # the search's own draw
    }
    if variant == "standalone":
        net = build_net(supernet.arch_of(path))
        init_weights(net, residual=tuple(m.body for m in net.modules() if isinstance(m, Residual)),
                     residual_scale=args.init_scale)
        residuals = [m.body.project[1].weight for m in net.modules() if isinstance(m, Residual)]
        model, parameters = net, net
        scales = lambda: (statistics.fmean(float(w.abs().mean()) for w in residuals), None)  # noqa: E731
    else:
        model, parameters = supernet, nn.ParameterList(supernet.weight_parameters())
        scales = lambda: (path_scale(supernet, path), path_scale(supernet, largest))  # noqa: E731
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = make_sgd(parameters, args.lr)
    criterion, batches = nn.CrossEntropyLoss(), sample_batches(args.batch_size, args.seed)
    rows, losses, start = [], [], time.perf_counter()
    for step in range(args.steps):
        images, labels = next(batches)
        logits = model(images) if variant == "standalone" else model(images, planners[variant](step))
        loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            with torch.no_grad():
                path_gamma, largest_gamma = scales()
            rows.append({"variant": variant, "step": step + 1, "path_gamma": path_gamma,
                         "largest_gamma": largest_gamma, "loss": statistics.fmean(losses),
                         "seconds": time.perf_counter() - start})
            losses = []
            largest_text = "-" if largest_gamma is None else f"{largest_gamma:.4f}"
            print(f"{variant:13} step {step + 1:5d}  |γ| path {path_gamma:.4f}  largest {largest_text}  "
                  f"loss {rows[-1]['loss']:.3f}", flush=True)
    return rows


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"# Residual branches from zero: how fast they open ({args.space}, path {args.op} in every layer)", "",
             f"{args.steps} SGD steps (lr {args.lr}, Nesterov, batch {args.batch_size}) on the embedded CIFAR-10 "
             f"sample, the same batches for every variant; |γ|: mean absolute project-BN scale of the path's "
             f"residual branches (largest: the path of each layer's biggest candidate); loss: mean since the last row.",
             "", "| variant | step | path |γ| | largest |γ| | loss |", "|---|---|---|---|---|"]
    for row in rows:
        largest = "–" if row["largest_gamma"] is None else f"{row['largest_gamma']:.4f}"
        lines.append(f"| {row['variant']} | {row['step']} | {row['path_gamma']:.4f} | {largest} | {row['loss']:.3f} |")
    lines += ["", f"Reproduce: `python benchmarks/residual_scale.py --steps {args.steps} --every {args.every} "
                  f"--variants {' '.join(args.variants)}"
                  f"{f' --init-scale {args.init_scale:g}' if args.init_scale else ''}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="proxyless-cifar")
    parser.add_argument("--op", default="mb_k5_e3", help="the one net's candidate at every layer")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:4]))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--init-scale", type=float, default=0.0, help="the scale the residual branches start at")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="residual_scale")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [row for variant in args.variants for row in train_variant(variant, args.space, args.op, args)]
    data = {"environment": environment(), "settings": {k: v for k, v in vars(args).items() if k != "results"},
            "rows": rows}
    data["settings"]["results"] = str(args.results)
    for path in write_results(args.name, data, report(rows, args), args.results):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
