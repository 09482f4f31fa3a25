"""Does the proxyless-cifar supernet train when its paths are sampled? The 250-step probe of issue 15.

On the embedded CIFAR-10 sample, the same 250 SGD steps (batch 64, one-cycle lr 0.05 peaking at 30%,
the same data order and augmentation for every run):
    standalone      a plain all-`mb_k3_e3` network
    fixed path      the supernet, always on the all-`mb_k3_e3` path
    sampled ...     the supernet on a path drawn every step: uniformly or strictly fairly, with
                    independent (the paper) or entangled candidate weights
Reported: the mean training loss of the last 25 steps, and the valid top-1 of the all-`mb_k3_e3`
path (BN recalibrated on it for the supernets). A supernet that trains ends near the fixed path.

    python benchmarks/supernet_probe.py            # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import proxyless as px  # noqa: E402
from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.infra.distributed import keyed_generator  # noqa: E402
from proxyless.search.quality import subnet_accuracy  # noqa: E402
from proxyless.search.sampling import fair_plan  # noqa: E402
from proxyless.search.supernet import SuperNet  # noqa: E402

RUNS = {  # name -> (model, path sampling)
    "standalone": ("standalone", None),
    "fixed path": ("independent", "fixed"),
    "sampled uniform, independent": ("independent", "uniform"),
    "sampled fair, independent": ("independent", "fair"),
    "sampled uniform, entangled": ("entangled", "uniform"),
    "sampled fair, entangled": ("entangled", "fair"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="20 steps, to check the script")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = 20 if args.quick else args.steps
    space = px.get_space("proxyless-cifar")
    splits = px.load_splits("sample", 32, valid_size=0.2, progress=False)
    k3e3 = [slot.candidates.index(px.parse_op("mb_k3_e3")) for slot in space.layers()]
    rows = []
    for name, (model, sampling) in RUNS.items():
        started = time.perf_counter()
        losses, top1 = probe(space, splits, model, sampling, k3e3, steps)
        rows.append({"run": name, "first_loss": sum(losses[:25]) / len(losses[:25]),
                     "final_loss": sum(losses[-25:]) / len(losses[-25:]), "valid_top1_k3e3": top1,
                     "seconds": time.perf_counter() - started})
        print(f"{name:<32} loss {rows[-1]['first_loss']:.2f} -> {rows[-1]['final_loss']:.2f}  valid {top1:.3f}")
    fixed = next(r["final_loss"] for r in rows if r["run"] == "fixed path")
    for row in rows:
        row["gap_to_fixed"] = row["final_loss"] - fixed
    lines = [f"# Supernet probe: {steps} steps of batch 64 on the embedded sample (proxyless-cifar)", "",
             "| run | loss first 25 → last 25 steps | gap to fixed path | valid top-1 (all mb_k3_e3) |",
             "|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['first_loss']:.2f} → {r['final_loss']:.2f} | {r['gap_to_fixed']:+.2f} "
              f"| {r['valid_top1_k3e3']:.3f} |" for r in rows]
    write_results("supernet_probe_quick" if args.quick else "supernet_probe",
                  {"environment": environment(), "steps": steps, "rows": rows}, "\n".join(lines) + "\n", args.results)
    print("\n".join(lines))


def probe(space, splits, model: str, sampling: str | None, k3e3: list[int], steps: int) -> tuple[list[float], float]:
    """Train one run for `steps` steps; its per-step losses and the valid top-1 of the all-k3e3 path."""
    torch.manual_seed(0)
    if model == "standalone":
        arch = px.Arch(space, tuple(space.layers()[i].candidates[k] for i, k in enumerate(k3e3)))
        net: nn.Module = px.build_net(arch)
    else:
        net = SuperNet(space, entangled=model == "entangled")
    net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=4e-5)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps, pct_start=0.3)
    sizes = [len(slot.candidates) for slot in space.layers()]
    loader = DataLoader(splits.train, batch_size=64, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    losses: list[float] = []
    net.train()
    while len(losses) < steps:
        for images, targets in loader:  # the same order for every run: the loader's generator is seeded
            step = len(losses)
            images = images.contiguous(memory_format=torch.channels_last)  # (64, 3, 32, 32)
            if model == "standalone":
                logits = net(images)
            else:
                logits = net(images, path_of(sampling, sizes, k3e3, step))
            loss = nn.functional.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    valid = DataLoader(splits.valid, batch_size=200)
    if model == "standalone":
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum())
                          for x, y in valid)
        return losses, correct / len(splits.valid)
    calibration = [x for x, _ in DataLoader(splits.train, batch_size=100)][:8]
    return losses, subnet_accuracy(net, k3e3, valid, calibration, memory_format=torch.channels_last)


def path_of(sampling: str, sizes: list[int], k3e3: list[int], step: int) -> list[int]:
    if sampling == "fixed":
        return k3e3
    if sampling == "fair":
        return fair_plan(sizes, 0, step)
    generator = keyed_generator(0, step)
    return [int(torch.randint(size, (1,), generator=generator)) for size in sizes]


if __name__ == "__main__":
    main()
