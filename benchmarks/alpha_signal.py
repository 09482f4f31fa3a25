"""Is there a signal in the architecture gradient, or does α end near uniform because it follows noise?

Takes a finished search's supernet (its checkpoint and, for a family, one target's α) and repeats the
architecture step's gradient many times without updating anything: two paths per layer sampled from p,
a batch of the held-out valid split, the cross-entropy's BinaryConnect gradient on α. For every logit:
the mean over steps (the drift a search follows) and the standard deviation (the noise around it). Over
T steps of a search, Adam (β1 = 0) moves a logit by about lr a step in the direction of each step's
gradient, so the drift shows above the noise when z = √T · |mean| / std is well above 1; at the same lr,
T = (2 · std / mean)² steps make z = 2.

    python benchmarks/alpha_signal.py --run benchmarks/results/search_vs_baselines_runs/cost/family \
        --member 46ms --data benchmarks/results/search_vs_baselines_runs/data --batch 64 256

Writes benchmarks/results/alpha_signal.{json,md}. It reads valid images only (the split the search held
out for α), never the test split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.infra.checkpoint import load_checkpoint  # noqa: E402
from proxyless.infra.distributed import keyed_generator  # noqa: E402
from proxyless.search.pipeline import load_search_data, supernet_of  # noqa: E402
from proxyless.search.strategies import frozen  # noqa: E402
from proxyless.search.supernet import SuperNet  # noqa: E402


def gradient_samples(supernet: SuperNet, valid, batch: int, steps: int, seed: int) -> list[torch.Tensor]:
    """`steps` cross-entropy gradients on α as the architecture step computes them: per layer a
    (steps, candidates) tensor. Nothing is updated; BN in train mode, as in the search's arch step."""
    criterion = nn.CrossEntropyLoss()
    grads = [[] for _ in supernet.arch_parameters()]
    supernet.train()
    for step in range(steps):
        # 1. the paths and the valid batch of this step
        generator = keyed_generator(seed, step)
        plan = supernet.sample_two(generator)
        rows = torch.randint(len(valid), (batch,), generator=generator).tolist()
        images = torch.stack([valid[i][0] for i in rows]).contiguous(memory_format=torch.channels_last)
        targets = torch.tensor([int(valid[i][1]) for i in rows])
        # 2. the gradient on α alone, weights frozen
        for alpha in supernet.arch_parameters():
            alpha.grad = None
        with frozen(supernet.weight_parameters()):
            criterion(supernet(images, plan), targets).backward()
        for layer, alpha in zip(grads, supernet.arch_parameters()):
            layer.append(alpha.grad.detach().clone())
    return [torch.stack(layer) for layer in grads]  # per layer (steps, candidates)


def summarise(grads: list[torch.Tensor], probs: list[torch.Tensor], arch_steps: int) -> dict:
    """Per logit: mean, std and z at `arch_steps`; over all logits: the share with z > 2 and the median
    number of steps that would make z = 2."""
    layers, zs, needed = [], [], []
    for g, p in zip(grads, probs):
        mean, std = g.mean(0), g.std(0).clamp_min(1e-12)
        z = arch_steps ** 0.5 * mean.abs() / std
        steps_for_2 = (2 * std / mean.abs().clamp_min(1e-12)) ** 2
        zs += z.tolist()
        needed += steps_for_2.tolist()
        layers.append({"p": p.tolist(), "mean": mean.tolist(), "std": std.tolist(), "z": z.tolist()})
    return {"layers": layers, "z_median": statistics.median(zs), "z_max": max(zs),
            "share_z_over_2": sum(z > 2 for z in zs) / len(zs), "steps_for_z2_median": statistics.median(needed),
            "logits": len(zs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a search run directory with checkpoint.pt")
    parser.add_argument("--member", default=None, help="a family's target, e.g. 46ms")
    parser.add_argument("--data", required=True, help="the image folder the search ran on")
    parser.add_argument("--valid-size", type=float, default=0.2, help="the search's --valid-size")
    parser.add_argument("--seed", type=int, default=0, help="the search's --seed (its valid split)")
    parser.add_argument("--batch", type=int, nargs="+", default=[64], help="arch batch sizes to compare")
    parser.add_argument("--steps", type=int, default=200, help="gradients per batch size")
    parser.add_argument("--arch-steps", type=int, default=None,
                        help="T, the arch steps one α got in the search (default: from its metrics.jsonl)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = load_checkpoint(args.run / "checkpoint.pt")
    supernet = supernet_of(state, str(args.run), args.member)
    arms = max(1, len(state.get("family", [])))
    arch_steps = args.arch_steps or last_arch_steps(args.run) // arms
    valid = load_search_data(args.data, supernet.space.input_size, args.valid_size, seed=args.seed,
                             progress=False).valid
    rows = []
    for batch in args.batch:
        start = time.perf_counter()
        grads = gradient_samples(supernet, valid, batch, args.steps, args.seed)
        rows.append({"batch": batch, "seconds": time.perf_counter() - start,
                     **summarise(grads, supernet.probs(), arch_steps)})
    write(args, arch_steps, rows)


def last_arch_steps(run: Path) -> int:
    """The arch steps of a search run so far, summed over its epochs' metrics rows."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return sum(json.loads(line)["arch_steps"] for line in lines if line.strip())


def write(args: argparse.Namespace, arch_steps: int, rows: list[dict]) -> None:
    table = ["| arch batch | gradients | median z at T | largest z | logits with z > 2 | median steps for z = 2 "
             "| seconds |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        table.append(f"| {row['batch']} | {args.steps} | {row['z_median']:.2f} | {row['z_max']:.2f} "
                     f"| {row['share_z_over_2']:.0%} of {row['logits']} | {row['steps_for_z2_median']:,.0f} "
                     f"| {row['seconds']:.0f} |")
    markdown = "\n".join([
        "# The signal in the architecture gradient", "",
        f"Search: `{args.run}`" + (f", target {args.member}" if args.member else "") + f"; T = {arch_steps} arch "
        "steps for this α in the search. For each logit, z = √T · |mean gradient| / its standard deviation "
        "over the sampled steps (two paths from p, a random valid batch, the cross-entropy's BinaryConnect "
        "gradient; nothing updated): the drift the search could follow against the noise it did follow.",
        "", *table, "",
        f"Reproduce: `python benchmarks/alpha_signal.py --run {args.run}"
        + (f" --member {args.member}" if args.member else "") + f" --data {args.data} --batch "
        + " ".join(str(b) for b in args.batch) + f" --steps {args.steps}`", ""])
    data = {"environment": environment(), "args": {**vars(args), "run": str(args.run), "results": str(args.results)},
            "arch_steps": arch_steps, "rows": rows}
    write_results("alpha_signal", data, markdown, args.results)
    print(markdown)


if __name__ == "__main__":
    main()
