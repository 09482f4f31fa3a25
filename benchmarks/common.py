"""Helpers shared by the benchmark scripts: environment header and result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

import torch

from proxyless.infra.atomic import atomic_write_text
from proxyless.latency.measure import cpu_name
from proxyless.latency.validate import rank_correlation

RESULTS = Path(__file__).resolve().parent / "results"
# the table the CIFAR search benchmarks ran with (proxyless-cifar, torch-cpu, batch 32, one thread, built
# 2026-12-01), pinned: `latency_validation.py` rewrites results/lut_*.json each time it validates a row
SEARCH_LUT = RESULTS / "pinned" / "lut_proxyless-cifar_torch-cpu_b32.json"


def environment() -> dict:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def optional_flags(*pairs: tuple[str, object]) -> list[str]:
    """`[flag, value, ...]` for each (flag, value) whose value was given (not None): the flags left out
    keep the command's own defaults."""
    return [part for flag, value in pairs if value is not None for part in (flag, str(value))]


def spearman(values: list[float], truth: list[float]) -> float | None:
    """Spearman ρ, or None where either side is constant (no order to compare)."""
    return None if len(set(values)) == 1 or len(set(truth)) == 1 else rank_correlation(values, truth)


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_results(name: str, data: dict, markdown: str, directory: Path = RESULTS) -> tuple[Path, Path]:
    """<directory>/<name>.json and .md (default: benchmarks/results), written atomically."""
    json_path = atomic_write_text(Path(directory) / f"{name}.json", json.dumps(data, indent=2) + "\n")
    md_path = atomic_write_text(Path(directory) / f"{name}.md", markdown)
    return json_path, md_path
