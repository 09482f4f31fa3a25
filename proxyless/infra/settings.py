"""Run directories and the one resume contract of `search` and `train`.

A run writes its settings beside its results when it starts. To resume it, the saved settings win:
a setting given again with another value is refused, all of them listed in one line, except the
few that may change between sessions (`RESUMABLE`: more epochs, progress bars, loader workers,
torch threads, checkpoint cadence, TensorBoard), which are applied and recorded under "resumed" in the settings file.
The same check serves the command line (its flags, saved under "command" in config.json) and the
Python API (the nested configs of config.json).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from proxyless.errors import UserError
from proxyless.infra.atomic import atomic_write_text, read_json

# settings (leaf names) that may differ on a resume; `epochs` only grows
RESUMABLE = frozenset({"epochs", "progress", "no_progress", "num_workers", "workers", "threads", "checkpoint_every",
                       "tensorboard"})
# settings whose flag is not their name, with how a value of the setting reads as that flag's value
_FLAG_OF = {
    "num_workers": ("--workers", str),
    "progress": ("--no-progress", lambda shown: "off" if shown else "on"),
    "channels_last": ("--channels-first", lambda last: "off" if last else "on"),
    # the scale in config.json's settings, the flag's word in its command
    "residual_init": ("--residual-init", lambda scale: scale if isinstance(scale, str) else residual_init_name(scale)),
}
# `--residual-init`'s words for the scales a residual branch may start at (`SearchConfig.residual_init`)
RESIDUAL_INITS = {"zero": 0.0, "unit": 1.0}


def residual_init_name(scale: float) -> str:
    """The `--residual-init` word for a scale: 0 -> 'zero', 1 -> 'unit', 0.2 -> '0.2'."""
    return next((name for name, value in RESIDUAL_INITS.items() if value == scale), f"{scale:g}")


def flag_name(key: str) -> str:
    """The command-line flag of a setting: 'search.batch_size' -> '--batch-size'."""
    leaf = key.rsplit(".", 1)[-1]
    return _FLAG_OF[leaf][0] if leaf in _FLAG_OF else "--" + leaf.replace("_", "-")


def _flag_value(key: str, value: Any) -> str:
    """A setting's value as its flag says it: progress True -> 'off'."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in _FLAG_OF:
        return _FLAG_OF[leaf][1](value)
    return repr(value) if isinstance(value, str) else str(value)


def resume_changes(saved: Mapping[str, Any], given: Mapping[str, Any], run_dir: str | Path) -> dict[str, list]:
    """The settings of `given` that differ from `saved` ({key: [saved, given]}) when each may change on a
    resume; otherwise one UserError listing every difference. Keys missing from `saved` (settings added
    since the run started) are taken as given."""
    changed = _differences(saved, given)
    refused = sorted(key for key in changed if key.rsplit(".", 1)[-1] not in RESUMABLE)
    fewer = [key for key in changed if key.rsplit(".", 1)[-1] == "epochs" and _less(changed[key])]
    if refused:
        listed = ", ".join(f"{flag_name(k)} {_flag_value(k, changed[k][1])} (saved: {_flag_value(k, changed[k][0])})"
                           for k in refused)
        raise UserError(f"--resume {run_dir}: the saved settings win, but these differ: {listed}; drop them to "
                        f"continue the run, or start a new one with --out")
    if fewer:
        key = fewer[0]
        raise UserError(f"--resume {run_dir}: --epochs {changed[key][1]} is fewer than the run's {changed[key][0]}; "
                        "a resume may only add epochs")
    return changed


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> dict[str, list]:
    """{'search.lr': [0.1, 0.2]} for each leaf of `new` whose value differs in `old` (nested by dots)."""
    changed: dict[str, list] = {}
    for key, value in new.items():
        if key not in old:
            continue  # a setting added since the run started
        before, name = old[key], f"{prefix}{key}"
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            changed.update(_differences(before, value, f"{name}."))
        elif before != value and [before] != value:  # a flag that became a list: `x` then is `[x]` now
            changed[name] = [before, value]
    return changed


def _less(pair: list) -> bool:
    saved, given = pair
    return isinstance(saved, int) and isinstance(given, int) and given < saved


def record_resume(settings: dict[str, Any], changed: dict[str, list]) -> dict[str, Any]:
    """`settings` with the changes applied and a "resumed" entry saying when what changed."""
    updated = dict(settings)
    for key, (_, value) in changed.items():
        _assign(updated, key.split("."), value)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    updated["resumed"] = [*settings.get("resumed", []), {"at": when, "changed": changed}]
    return updated


def _assign(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree[part] = dict(tree[part])
        tree = tree[part]
    tree[path[-1]] = value


@dataclass(frozen=True)
class OpenedRun:
    """A run directory ready to run in (plain data, so torchrun's rank 0 can send it to the others)."""

    path: Path
    saved: dict[str, Any] = field(default_factory=dict)  # a resume: the settings config.json held
    changed: dict[str, list] = field(default_factory=dict)  # a resume: the allowed changes, [saved, given]

    def record_resume(self) -> None:
        """Write the changes of this resume into config.json; called once the checkpoint is restored, so that
        a resume that fails leaves the run's files as they were."""
        if self.changed:
            atomic_write_text(self.path / "config.json", json.dumps(record_resume(self.saved, self.changed), indent=2)
                              + "\n")


def open_run(out: str | Path | None, default_name: str, settings: dict[str, Any], resume: bool = False,
             overwrite: bool = False) -> OpenedRun:
    """The run directory with `settings` in its config.json: written at once for a fresh run; for a resume
    compared with the saved ones (`resume_changes`), refusing a difference before anything runs."""
    run_dir = prepare_run_dir(out, default_name, resume, overwrite)
    path = run_dir / "config.json"
    if not resume:
        atomic_write_text(path, json.dumps({**settings, "torch": torch.__version__}, indent=2) + "\n")
        return OpenedRun(run_dir)
    saved = read_json(path, UserError, "run's saved settings")
    if not isinstance(saved, dict):
        raise UserError(f"{path}: expected the run's settings as a JSON object; the run directory is damaged")
    return OpenedRun(run_dir, saved, resume_changes(saved, settings, run_dir))


def prepare_run_dir(out: str | Path | None, default_name: str, resume: bool = False, overwrite: bool = False) -> Path:
    """The run directory: refuse to touch an existing one unless resuming it or told to overwrite it.
    Without `out`, runs/<default_name> (numbered if taken)."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if out is None:
        if resume:
            raise UserError("--resume needs RUN_DIR: the run directory to continue")
        return _fresh_dir(Path("runs") / default_name)
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {str(out)!r} is a file, not a directory; choose another path")
    if resume:
        if not (path / "config.json").is_file():
            raise UserError(f"--resume {out}: no run there (no config.json); pass the directory of a run to continue")
        return path
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise UserError(f"output directory {str(out)!r} already exists; pass --resume {out} to continue it or "
                            "--overwrite to replace it")
        if not (path / "config.json").exists():
            raise UserError(f"refusing to --overwrite {str(out)!r}: it does not look like a proxyless run directory "
                            "(no config.json)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fresh_dir(base: Path) -> Path:
    """base, or base-2, base-3, ... whichever does not exist yet."""
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path
