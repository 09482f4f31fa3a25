"""Does each device get its own architecture? One supernet, a target per latency model, drawn side by side.

One family search (`proxyless search --lut A B C --target-latency a b c`) on the same space, images and
settings: the supernet's weights are trained once, and each device keeps its own α, controller and
derived net. The latency models: this CPU with PyTorch, this CPU with ONNX Runtime, and the Pixel 1
phone table published with ProxylessNAS (`mobile_trim.yaml`). Each target sits at the same fraction of
its table's reachable range (the fastest to the slowest net of the space on that device), so every
device is equally constrained. The supernet has to learn for the nets to differ for accuracy as well
as latency reasons: the report says how far it got (train top-1, each device's argmax on the valid
split, α entropy).

    python benchmarks/hardware_specialisation.py --data ~/cifar10-jpg --pixel-lut ../shared/reference/mobile_trim.yaml

The space is `proxyless-imagenet` (224 px), the only one the Pixel table covers; the images are a
fixed subset of CIFAR-10 (`--per-class` per class) resized to 224 px. Besides the figure, every op of
the derived nets is tabulated with its cost on each device, which is what the choices are explained by.
The run directory (`--work`) resumes: rerunning the command continues an interrupted search.
Writes benchmarks/results/hardware_specialisation.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, optional_flags, write_results  # noqa: E402
from lanes import Job, run_jobs  # noqa: E402
from proxyless.arch import load_arch  # noqa: E402
from proxyless.figures import draw_archs  # noqa: E402
from proxyless.latency.lut import load_lut  # noqa: E402
from proxyless.latency.predict import LatencyModel  # noqa: E402
from proxyless.ops import MBConv, format_op  # noqa: E402
from proxyless.search.family import target_label  # noqa: E402
from proxyless.search.hardware import reachable  # noqa: E402
from proxyless.space import get_space  # noqa: E402
from search_vs_baselines import link_subset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEVICES = {  # label -> default table
    "torch-cpu": RESULTS / "lut_proxyless-imagenet_torch-cpu_b1.json",
    "onnxruntime": RESULTS / "lut_proxyless-imagenet_onnxruntime_b1.json",
    "pixel1": REPO.parent / "shared" / "reference" / "mobile_trim.yaml",
}


def summary(arch, model: LatencyModel) -> dict:
    """Depth (non-zero layers), share of each kernel and expansion, predicted latency."""
    blocks = [op for op in arch.ops if isinstance(op, MBConv)]
    return {
        "depth": len(blocks),
        "kernels": {k: sum(op.kernel == k for op in blocks) for k in (3, 5, 7)},
        "expand6": sum(op.expand == 6 for op in blocks),
        "predicted_ms": model.of_arch(arch),
    }


RATIOS = {"k5/k3": ("mb_k5_e6", "mb_k3_e6"), "k7/k3": ("mb_k7_e6", "mb_k3_e6"), "e6/e3": ("mb_k3_e6", "mb_k3_e3")}


def cost_ratios(model: LatencyModel) -> dict[str, float]:
    """How much dearer a bigger kernel or expansion is on this device: per-layer cost ratios, averaged."""
    ratios = {}
    for label, (big, small) in RATIOS.items():
        values = []
        for slot, costs in zip(model.space.layers(), model.per_layer):
            names = [format_op(op) for op in slot.candidates]
            values.append(float(costs[names.index(big)] / costs[names.index(small)]))
        ratios[label] = sum(values) / len(values)
    return ratios


def learning(metrics: list[dict], label: str) -> dict:
    """How far the shared supernet and this device's α got: first and last epoch after the warmup."""
    mine = [row for row in metrics if f"mean_entropy@{label}" in row] or metrics
    first, last = mine[0], mine[-1]
    return {"train_top1": [first["train_top1"], last["train_top1"]],
            "valid_top1_argmax": [first.get(f"valid_top1_argmax@{label}"), last.get(f"valid_top1_argmax@{label}")],
            "mean_entropy": [first.get(f"mean_entropy@{label}"), last.get(f"mean_entropy@{label}")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder root with train/ and test/")
    parser.add_argument("--pixel-lut", type=Path, default=DEVICES["pixel1"],
                        help="the Pixel 1 table (mobile_trim.yaml)")
    parser.add_argument("--space", default="proxyless-imagenet")
    parser.add_argument("--fraction", type=float, default=0.3, help="target = fastest + FRACTION x (slowest - fastest)")
    parser.add_argument("--per-class", type=int, default=200,
                        help="training images per class (fixed subset; 200: 38 min on one thread beside two lanes)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arch-lr", type=float, help="default: proxyless search's")
    parser.add_argument("--arch-every", type=int, help="default: proxyless search's")
    parser.add_argument("--threads", type=int, default=1, help="threads of the search")
    parser.add_argument("--work", type=Path, default=RESULTS / "hardware_specialisation_runs",
                        help="run directory (resumable)")
    parser.add_argument("--quick", action="store_true", help="a tiny search to check the script")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.per_class, args.epochs, args.batch_size = 4, 2, 8
    luts = {**DEVICES, "pixel1": args.pixel_lut}
    if not args.pixel_lut.is_file():
        raise SystemExit(f"--pixel-lut {args.pixel_lut} does not exist; pass the path of mobile_trim.yaml")
    space = get_space(args.space)
    counts = link_subset(args.data, args.work / "data", args.per_class, 2)
    models, targets = {}, {}
    for device, lut in luts.items():
        models[device] = LatencyModel(space, load_lut(lut))
        fastest, slowest = reachable(models[device])
        targets[device] = round(fastest + args.fraction * (slowest - fastest), 3)
    labels = {device: target_label(t) for device, t in targets.items()}
    out = args.work / "family"
    flags = ["search", "--data", str(args.work / "data"), "--space", args.space,
             "--lut", *map(str, luts.values()), "--target-latency", *labels.values(),
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--no-measure"]
    flags += optional_flags(("--arch-lr", args.arch_lr), ("--arch-every", args.arch_every))
    job = Job("family", flags, out, ["search", "--resume", str(out), "--no-progress"])
    records = run_jobs([job], 1, args.work / "jobs", threads=args.threads)
    archs = {device: load_arch(out / labels[device] / "arch.json") for device in luts}
    latency = {device: json.loads((out / labels[device] / "latency.json").read_text()) for device in luts}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    learned = {device: learning(metrics, labels[device]) for device in luts}
    settings = json.loads((out / "config.json").read_text())["search"]
    # every derived net priced on every device: the diagonal is what each target optimised
    cross = {d: {m: models[m].of_arch(archs[d]) for m in luts} for d in luts}
    summaries = {d: summary(archs[d], models[d]) for d in luts}
    ratios = {d: cost_ratios(models[d]) for d in luts}
    suffix = "_quick" if args.quick else ""
    args.results.mkdir(parents=True, exist_ok=True)
    draw_archs([(f"{d} ({targets[d]:.1f} ms)", archs[d]) for d in luts],
               args.results / f"hardware_specialisation{suffix}.png",
               title=f"{args.space}: derived architectures per latency model, one supernet "
                     f"(target at {args.fraction:.0%} of each range)")

    def pair(values, fmt):
        return " → ".join("–" if v is None else format(v, fmt) for v in values)

    rows = "\n".join(
        f"| {d} | {targets[d]:.2f} | {latency[d]['predicted_ms']:.2f} ({latency[d]['error']:+.1%}) | "
        f"{summaries[d]['depth']} | "
        f"{summaries[d]['kernels'][3]} / {summaries[d]['kernels'][5]} / {summaries[d]['kernels'][7]} | "
        f"{summaries[d]['expand6']} | "
        + " | ".join(f"{cross[d][m]:.1f}" for m in luts)
        + f" | {pair(learned[d]['valid_top1_argmax'], '.3f')} | {pair(learned[d]['mean_entropy'], '.2f')} |"
        for d in luts)
    ops = "\n".join(f"| {i} | " + " | ".join(format_op(archs[d].ops[i]) for d in luts) + " |"
                    for i in range(space.num_layers))
    train_top1 = learned[next(iter(luts))]["train_top1"]
    classes = sum(1 for p in (args.work / "data" / "train").iterdir() if p.is_dir())  # the search's head: the data's
    markdown = (
        f"# Hardware specialisation ({args.space})\n\n"
        f"{counts['train']} CIFAR-10 training images resized to {space.input_size} px "
        f"(the first {args.per_class} per class; 20% held out for α), one family search for the "
        f"{len(luts)} latency models: {args.epochs} epochs ({settings['warmup_epochs']} warmup), batch "
        f"{args.batch_size}, `proxyless search`'s defaults otherwise (weights {settings['weights']}, "
        f"sampling {settings['sampling']}); target at {args.fraction:.0%} of each table's reachable range. "
        f"The search took {records['family']['wall_s'] / 60:.0f} min on {args.threads} thread(s); "
        f"the supernet's train top-1 went {pair(train_top1, '.3f')} from the first epoch after the warmup "
        f"to the last (chance: {1 / classes:.3f}).\n\n"
        "| latency model | target (ms) | predicted (ms) | depth | k3 / k5 / k7 | e6 | "
        + " | ".join(f"on {m} (ms)" for m in luts)
        + " | valid top-1 of its argmax | α entropy |\n|" + "---|" * (8 + len(luts)) + "\n"
        + rows + "\n\n"
        "What each device charges for a bigger op (the table's cost ratio, averaged over the 21 layers):\n\n"
        "| latency model | " + " | ".join(RATIOS) + " |\n|---|" + "---|" * len(RATIOS) + "\n"
        + "\n".join(f"| {d} | " + " | ".join(f"{ratios[d][r]:.2f}" for r in RATIOS) + " |" for d in luts) + "\n\n"
        f"![derived architectures](hardware_specialisation{suffix}.png)\n\n"
        "| layer | " + " | ".join(luts) + " |\n|---|" + "---|" * len(luts) + "\n" + ops + "\n\n"
        f"Reproduce: `python benchmarks/hardware_specialisation.py --data DIR --pixel-lut mobile_trim.yaml"
        f"{' --quick' if args.quick else ''}`\n")
    data = {"environment": environment(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "targets": targets, "cost_ratios": ratios, "latency": latency, "cross_ms": cross, "summaries": summaries,
            "learning": learned, "search_settings": settings,
            "archs": {d: a.op_strings() for d, a in archs.items()}, "records": records}
    write_results(f"hardware_specialisation{suffix}", data, markdown, args.results)
    print(markdown)


if __name__ == "__main__":
    main()
