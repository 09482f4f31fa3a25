"""The latency lookup table: measured statistics per `OpKey`, with a header describing the device.

Stored as JSON:

    {"format": "proxyless-lut/1",
     "header": {"backend": "torch-cpu", "device": "AMD EPYC ...", "threads": 2, "batch": 32,
                "dtype": "float32", "versions": {...}, "date": "...", "calibration": {...}},
     "entries": [{"key": {...OpKey fields...}, "mean": 0.41, "var": 0.002, "count": 40}, ...]}

Times are in milliseconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from proxyless.errors import UserError
from proxyless.infra.atomic import atomic_write_text, read_json
from proxyless.latency.keys import Context, OpKey, all_keys, key_from_dict
from proxyless.space import SearchSpace

LUT_FORMAT = "proxyless-lut/1"


class LatencyTableError(UserError):
    """A latency table is missing, malformed, or does not cover what it is asked for."""


def is_count(x: Any) -> bool:
    """An integer >= 1 (not a bool)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def is_finite(x: Any) -> bool:
    """A finite number (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_nonnegative(x: Any) -> bool:
    """A finite number >= 0 (not a bool)."""
    return is_finite(x) and x >= 0


@dataclass(frozen=True)
class Stat:
    """Latency statistics of one op, in milliseconds."""

    mean: float
    var: float = 0.0
    count: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and self.mean >= 0 and self.var >= 0 and self.count >= 1):
            raise ValueError(f"invalid latency statistics: mean {self.mean}, var {self.var}, count {self.count}")


@dataclass
class LatencyTable:
    header: dict[str, Any]
    entries: dict[OpKey, Stat] = field(default_factory=dict)

    @property
    def context(self) -> Context:
        return Context(int(self.header.get("batch", 1)), str(self.header.get("dtype", "float32")),
                       str(self.header["backend"]))

    def __contains__(self, key: OpKey) -> bool:
        return key in self.entries

    def latency(self, key: OpKey) -> float:
        try:
            return self.entries[key].mean
        except KeyError:
            raise LatencyTableError(f"the latency table has no entry for {key.describe()}") from None

    def missing(self, keys: Iterable[OpKey]) -> list[OpKey]:
        return [key for key in keys if key not in self.entries]

    def check_covers(self, space: SearchSpace) -> None:
        """Raise, listing (some of) the missing entries, unless every op of `space` has a latency."""
        missing = self.missing(all_keys(space, self.context))
        if missing:
            shown = "; ".join(key.describe() for key in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise LatencyTableError(
                f"the latency table ({self.header.get('backend')}, batch {self.context.batch}) does not cover "
                f"space {space.name!r}: {len(missing)} missing entries: {shown}{more}; "
                f"build one with `proxyless lut build --space {space.name}`"
            )

    def to_dict(self) -> dict[str, Any]:
        entries = [{"key": key.to_dict(), "mean": s.mean, "var": s.var, "count": s.count}
                   for key, s in sorted(self.entries.items())]
        return {"format": LUT_FORMAT, "header": self.header, "entries": entries}

    @classmethod
    def from_dict(cls, data: Any, where: str = "latency table") -> LatencyTable:
        if not isinstance(data, dict) or data.get("format") != LUT_FORMAT:
            raise LatencyTableError(f"{where}: not a proxyless latency table (no '{LUT_FORMAT}' format marker)")
        header = data.get("header")
        if not isinstance(header, dict) or not isinstance(header.get("backend"), str):
            raise LatencyTableError(f"{where}: the header must name its 'backend'")
        _check_header(header, where)
        items = data.get("entries", [])
        if not isinstance(items, list):
            raise LatencyTableError(f"{where}: 'entries' must be a list, got {type(items).__name__}")
        entries: dict[OpKey, Stat] = {}
        for i, item in enumerate(items):
            try:
                key, stat = _entry_from(item)
            except ValueError as err:
                raise LatencyTableError(f"{where}: entry {i} is malformed ({err})") from None
            entries[key] = stat
        return cls(header, entries)


def _entry_from(item: Any) -> tuple[OpKey, Stat]:
    """{'key': {...OpKey fields...}, 'mean': 0.41, 'var': 0.002, 'count': 40} -> (OpKey, Stat); var and count
    are optional."""
    if not isinstance(item, dict) or "key" not in item or "mean" not in item:
        raise ValueError(f"expected {{key: {{...}}, mean: ms, var: ms^2, count: n}}, got {item!r}")
    mean, var, count = item["mean"], item.get("var", 0.0), item.get("count", 1)
    if not (is_nonnegative(mean) and is_nonnegative(var) and is_count(count)):
        raise ValueError(f"mean and var must be finite numbers >= 0 and count an integer >= 1, "
                         f"got mean {mean!r}, var {var!r}, count {count!r}")
    return key_from_dict(item["key"]), Stat(float(mean), float(var), count)


def _check_header(header: dict[str, Any], where: str) -> None:
    """Raise unless the optional header fields that the commands read have their types."""

    def wrong(name: str, what: str) -> LatencyTableError:
        return LatencyTableError(f"{where}: header field '{name}' must be {what}, got {header[name]!r}")

    if not is_count(header.get("batch", 1)):
        raise wrong("batch", "an integer >= 1")
    threads = header.get("threads", 0)
    if not (isinstance(threads, int) and is_nonnegative(threads)):
        raise wrong("threads", "an integer >= 0")
    for name in ("dtype", "space"):
        if not isinstance(header.get(name, ""), str):
            raise wrong(name, "a string")
    calibration = header.get("calibration") or {}
    if not (isinstance(calibration, dict) and all(is_finite(calibration.get(k, 0.0)) for k in ("scale", "offset"))):
        raise wrong("calibration", "{scale, offset} finite numbers")

def save_lut(table: LatencyTable, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(table.to_dict(), indent=1) + "\n")


def load_lut(path: str | Path) -> LatencyTable:
    """A proxyless JSON table, or the original ProxylessNAS mobile table (.yaml)."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        from proxyless.latency.mobile import table_from_mobile_yaml

        try:
            data = yaml.safe_load(path.read_text())
        except UnicodeDecodeError:
            raise LatencyTableError(f"{path}: not a text file; expected the mobile table in YAML") from None
        except (yaml.YAMLError, RecursionError) as err:  # RecursionError: nested too deeply
            raise LatencyTableError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        return table_from_mobile_yaml(data, where=str(path))
    data = read_json(path, LatencyTableError, "latency table")
    return LatencyTable.from_dict(data, where=str(path))
