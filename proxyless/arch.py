"""Architectures as data: a space plus one chosen op per searchable layer.

`arch.json` is the only contract between search and retraining:

    {
      "format": "proxyless-arch/1",
      "name": "proxyless_mobile",
      "space": { ...SearchSpace fields... },
      "ops": ["mb_k5_e3", "mb_k3_e3", "zero", ...]       # one per searchable layer
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from proxyless.errors import UserError
from proxyless.infra.atomic import atomic_write_text, read_json
from proxyless.ops import OpSpec, format_op, parse_op
from proxyless.space import SearchSpace, SpaceError

ARCH_FORMAT = "proxyless-arch/1"


class ArchError(UserError):
    """An architecture does not fit its space; the message names the layer."""


@dataclass(frozen=True)
class Arch:
    space: SearchSpace
    ops: tuple[OpSpec, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.ops) != self.space.num_layers:  # before laying out the layers, which may be many
            raise ArchError(
                f"architecture has {len(self.ops)} ops but space {self.space.name!r} has "
                f"{self.space.num_layers} searchable layers"
            )
        for slot, op in zip(self.space.layers(), self.ops):
            if op not in slot.candidates:
                allowed = ", ".join(format_op(c) for c in slot.candidates)
                why = " ('zero' needs a block that keeps its shape)" if format_op(op) == "zero" else ""
                raise ArchError(f"{slot.describe()}: op {format_op(op)!r} is not allowed here{why}; "
                                f"choose one of {allowed}")

    @classmethod
    def from_strings(cls, space: SearchSpace, ops: list[str], name: str = "") -> Arch:
        parsed = []
        for i, text in enumerate(ops):
            try:
                parsed.append(parse_op(text))
            except ValueError as err:
                raise ArchError(f"layer {i}: {err}") from None
        return cls(space, tuple(parsed), name)

    def op_strings(self) -> list[str]:
        return [format_op(op) for op in self.ops]

    def to_dict(self) -> dict[str, Any]:
        return {"format": ARCH_FORMAT, "name": self.name, "space": self.space.to_dict(), "ops": self.op_strings()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "architecture") -> Arch:
        if isinstance(data, dict) and str(data.get("format", "")).startswith("proxyless-tree-arch"):
            raise ArchError(f"{where}: a tree-cell network ({data['format']}), which this command does not handle "
                            "yet (MBConv networks only)")
        if not isinstance(data, dict) or "space" not in data or "ops" not in data:
            raise ArchError(f"{where}: expected an object with 'space' and 'ops' (a proxyless arch.json)")
        if data.get("format", ARCH_FORMAT) != ARCH_FORMAT:
            raise ArchError(f"{where}: unsupported format {data['format']!r}; expected {ARCH_FORMAT!r}")
        if not isinstance(data["ops"], list):
            raise ArchError(f"{where}: 'ops' must be a list of op names such as 'mb_k3_e6'")
        try:
            space = SearchSpace.from_dict(data["space"], where=f"{where}: space")
            return cls.from_strings(space, data["ops"], str(data.get("name", "")))
        except ArchError as err:
            raise ArchError(f"{where}: {err}") from None

    @property
    def input_size(self) -> int:
        return self.space.input_size

    @property
    def num_classes(self) -> int:
        return self.space.num_classes

    @property
    def label(self) -> str:
        """The name, else the space's: what runs and logs call the network."""
        return self.name or self.space.name

    def with_task(self, input_size: int, num_classes: int) -> Arch:
        """The same ops on the space adapted to another input size / class count (see SearchSpace.with_task)."""
        return replace(self, space=self.space.with_task(input_size, num_classes))

    def summary(self) -> str:
        """One line per searchable layer: index, stage, shape and op."""
        lines = []
        for slot, op in zip(self.space.layers(), self.ops):
            lines.append(
                f"{slot.index:>3}  stage {slot.stage}  {slot.input_size:>3}px  "
                f"{slot.in_channels:>4} -> {slot.out_channels:<4} s{slot.stride}  {format_op(op)}"
            )
        return "\n".join(lines)


def save_arch(arch: Arch, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(arch.to_dict(), indent=2) + "\n")


def load_arch(path: str | Path) -> Arch:
    path = Path(path)
    data = read_json(path, ArchError, "architecture file")
    try:
        return Arch.from_dict(data, where=str(path))
    except SpaceError as err:
        raise ArchError(str(err)) from None
