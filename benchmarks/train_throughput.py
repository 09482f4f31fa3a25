"""Training throughput (images/s) of a CIFAR-sized network: channels-first vs channels-last.

Both memory formats are timed in one run, interleaved round by round so that the noise of a
shared machine hits both alike; the table reports medians and the ratio per round.

    python benchmarks/train_throughput.py                 # embedded CIFAR-10 sample
    python benchmarks/train_throughput.py --rounds 7 --steps 30 --zoo proxyless_mobile
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, median, write_results  # noqa: E402
from proxyless.data import load_splits, make_loader  # noqa: E402
from proxyless.net import build_net  # noqa: E402
from proxyless.optim import make_sgd  # noqa: E402
from proxyless.profile import profile  # noqa: E402
from proxyless.zoo import get_zoo_arch  # noqa: E402

FORMATS = {"channels_first": torch.contiguous_format, "channels_last": torch.channels_last}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample", help="data source (see `proxyless train --help`)")
    parser.add_argument("--zoo", default="mobilenetv2_0.35", help="zoo network, adapted to 32 px / 10 classes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per round and format")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args()


def batches(data: str, batch_size: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` real, augmented training batches held in memory, so loading is not timed."""
    splits = load_splits(data, 32, progress=False)
    loader = make_loader(splits.train, batch_size, train=True)
    out = []
    while len(out) < count:
        out.extend(loader)
    return out[:count]


def time_steps(net: nn.Module, data: list, memory_format: torch.memory_format) -> float:
    """Images per second of `len(data)` SGD steps in `memory_format`."""
    net = net.to(memory_format=memory_format).train()
    optimizer = make_sgd(net, lr=0.01)
    criterion = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for images, targets in data:
        loss = criterion(net(images.contiguous(memory_format=memory_format)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return sum(len(t) for _, t in data) / (time.perf_counter() - started)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch = get_zoo_arch(args.zoo).with_task(32, 10)
    data = batches(args.data, args.batch_size, args.steps)
    nets = {name: build_net(arch) for name in FORMATS}
    for name, fmt in FORMATS.items():  # warm-up: first-call allocations, kernel selection
        time_steps(nets[name], data[:3], fmt)
    rounds = []
    for r in range(args.rounds):
        row = {name: time_steps(nets[name], data, fmt) for name, fmt in FORMATS.items()}
        row["ratio"] = row["channels_last"] / row["channels_first"]
        rounds.append(row)
        print(f"round {r + 1}: " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    report(args, arch, rounds)


def report(args: argparse.Namespace, arch, rounds: list[dict]) -> None:
    summary = {name: median([r[name] for r in rounds]) for name in FORMATS}
    summary["ratio_of_medians"] = summary["channels_last"] / summary["channels_first"]
    summary["median_round_ratio"] = median([r["ratio"] for r in rounds])
    prof = profile(build_net(arch), 32)
    result = {"env": environment(), "args": vars(args), "network": arch.name, "params": prof.params,
              "macs": prof.macs, "rounds": rounds, "median": summary}
    lines = [
        "# Training throughput: channels-first vs channels-last",
        "",
        f"{arch.name} at 32 px ({prof}), batch {args.batch_size}, {args.steps} SGD steps per round, "
        f"{args.rounds} interleaved rounds, {args.threads} threads, torch {torch.__version__}, {result['env']['cpu']}.",
        "",
        "| format | median images/s |",
        "|---|---|",
        *(f"| {name} | {summary[name]:.1f} |" for name in FORMATS),
        "",
        f"**channels-last / channels-first = {summary['median_round_ratio']:.2f}** (median of the per-round "
        f"ratios; ratio of the medians {summary['ratio_of_medians']:.2f}; rounds {min(r['ratio'] for r in rounds):.2f}–"
        f"{max(r['ratio'] for r in rounds):.2f}).",
        "",
        "Rerun: `python benchmarks/train_throughput.py`",
        "",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    write_results("train_throughput", result, markdown)


if __name__ == "__main__":
    main()
