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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from proxyless.atomic import atomic_write_text, read_json
from proxyless.errors import UserError
from proxyless.latency.keys import Context, OpKey, all_keys
from proxyless.space import SearchSpace

LUT_FORMAT = "proxyless-lut/1"


class LatencyTableError(UserError):
    """A latency table is missing, malformed, or does not cover what it is asked for."""


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
        if not isinstance(header, dict) or "backend" not in header:
            raise LatencyTableError(f"{where}: the header must name its 'backend'")
        entries: dict[OpKey, Stat] = {}
        for i, item in enumerate(data.get("entries", [])):
            try:
                entries[OpKey.from_dict(item["key"])] = Stat(float(item["mean"]), float(item.get("var", 0.0)),
                                                            int(item.get("count", 1)))
            except (KeyError, TypeError, ValueError) as err:
                raise LatencyTableError(f"{where}: entry {i} is malformed ({err})") from None
        return cls(header, entries)


def save_lut(table: LatencyTable, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(table.to_dict(), indent=1) + "\n")


def load_lut(path: str | Path) -> LatencyTable:
    """A proxyless JSON table, or the original ProxylessNAS mobile table (.yaml)."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        from proxyless.latency.mobile import table_from_mobile_yaml

        try:
            return table_from_mobile_yaml(yaml.safe_load(path.read_text()), where=str(path))
        except yaml.YAMLError as err:
            raise LatencyTableError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    data = read_json(path, LatencyTableError, "latency table")
    return LatencyTable.from_dict(data, where=str(path))
