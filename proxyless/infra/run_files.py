"""Reading back what a `proxyless train` or `proxyless search` run wrote to its directory.

    metrics.jsonl (or .csv)   one row per epoch, both kinds of run
    arch.json                 the trained network, or the one a search derived (absent mid-search)
    arch_history.jsonl        search: per epoch, each layer's argmax op, probabilities and entropy
    config.json               the settings; search: the searched space, whose candidates the
                              probabilities refer to, and the latency target
    latency.json              search: the derived net's latency against the target

Every reader tolerates a missing file (an unfinished run has fewer of them) and turns a malformed one
into a one-line UserError naming it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxyless.errors import UserError

if TYPE_CHECKING:  # infra depends on no domain module at import time (they use infra.atomic)
    from proxyless.arch import Arch
    from proxyless.space import SearchSpace


@dataclass(frozen=True)
class RunFiles:
    path: Path
    metrics: list[dict[str, Any]]
    history: list[dict[str, Any]]  # empty for a training run
    arch: Arch | None
    space: SearchSpace | None  # search: the searched space; training: the arch's
    settings: dict[str, Any]  # config.json's settings, flat (see `flat_settings`)
    latency: dict[str, Any]  # latency.json

    @property
    def is_search(self) -> bool:
        return bool(self.history)

    def candidates(self) -> list[list[str]]:
        """Each layer's candidate op names, in the order of the probabilities in arch_history.jsonl."""
        if self.space is None:
            return [[f"op {i}" for i in range(len(probs))] for probs in self.history[-1]["probs"]]
        from proxyless.ops import format_op

        return [[format_op(op) for op in slot.candidates] for slot in self.space.layers()]


def read_run(run_dir: str | Path) -> RunFiles:
    """The files of a run directory; refuses a directory without any per-epoch metrics."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run directory '{path}' does not exist; pass the --out of a `proxyless train` or "
                        "`proxyless search`")
    from proxyless.arch import load_arch  # the domain loads the arch and space (and itself uses infra)
    from proxyless.space import SearchSpace

    metrics = read_metrics(path)
    if not metrics:
        raise UserError(f"'{path}' has no metrics (metrics.jsonl or metrics.csv with at least one epoch); "
                        "is it a `proxyless train` or `proxyless search` run that finished an epoch?")
    arch = load_arch(path / "arch.json") if (path / "arch.json").is_file() else None
    config = read_json_object(path / "config.json")
    space = (SearchSpace.from_dict(config["space"], where=f"{path / 'config.json'}: space")
             if "space" in config else None)
    return RunFiles(path, metrics, read_jsonl(path / "arch_history.jsonl"), arch,
                    space or (arch.space if arch else None),
                    flat_settings(config), read_json_object(path / "latency.json"))


def run_settings(run_dir: str | Path) -> dict[str, Any]:
    """A run's settings, flat (see `flat_settings`); {} when it has no config.json."""
    return flat_settings(read_json_object(Path(run_dir) / "config.json"))


def flat_settings(config: dict[str, Any]) -> dict[str, Any]:
    """config.json as one level named like the flags: the search's or training's config, the space's name,
    the data, and for a latency target lut, target_latency ('40ms') and latency_loss."""
    flat: dict[str, Any] = {**_mapping(config.get("search")), **_mapping(config.get("train"))}
    if isinstance(config.get("space"), dict):
        flat["space"] = config["space"].get("name")
    if "data" in config:
        flat["data"] = config["data"]
    latency = _mapping(config.get("latency"))
    if "target_ms" in latency:
        flat.update(lut=latency.get("lut"), target_latency=f"{latency['target_ms']:g}ms",
                    latency_loss=latency.get("loss"))
    return flat


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl, or metrics.csv (numbers parsed) when only that is there."""
    if (run_dir / "metrics.jsonl").is_file():
        return read_jsonl(run_dir / "metrics.jsonl")
    if not (run_dir / "metrics.csv").is_file():
        return []
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return [{key: _number(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(handle)]


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file ([] when it is missing)."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}: line {number} is not valid JSON ({err.msg}); was the run killed while "
                                "writing it? delete that line") from None
    return rows


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file ({} when it is missing)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: not valid JSON; check the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data
