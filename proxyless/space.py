"""Search spaces as data: a frozen `SearchSpace` record, its presets, and YAML/JSON loading.

A space describes the macro layout of a ProxylessNAS network:

    stem      conv 3x3 (stride `stem_stride`) + BN + act
    first     fixed MBConv, expand 1, 3x3, stride 1      (not searched; none when
              `first_block_channels` is null)
    stages    `depth` searchable layers each; the first layer of a stage has the stage's
              stride and width, the rest keep the shape (and may also choose `zero`)
    head      feature-mix 1x1 conv + BN + act -> global average pool -> dropout -> linear

`act` is the space's `activation`: relu6 (the paper) or relu (NAS-Bench-Macro).

Widths are base widths; the built network uses make_divisible(width * width_mult, 8).
The feature-mix width grows with the multiplier only above 1 (as in MobileNetV2).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from torch import nn

from proxyless.errors import UserError
from proxyless.infra.atomic import atomic_write_text
from proxyless.layers import ACTIVATIONS, make_divisible
from proxyless.ops import OpSpec, Skip, Zero, format_op, is_identity, parse_op

if TYPE_CHECKING:
    from proxyless.arch import Arch


class SpaceError(UserError):
    """A search space definition is invalid; the message names the field."""


#: The largest size, width, depth or width multiplier a space accepts: far above any real network,
#: and small enough that channel arithmetic (width * width_mult) cannot overflow.
MAX_SIZE = 2**20


@dataclass(frozen=True)
class Stage:
    width: int
    depth: int
    stride: int

    def __post_init__(self) -> None:
        _check_positive_int("stage width", self.width)
        _check_positive_int("stage depth", self.depth)
        _check_stride("stage stride", self.stride)


@dataclass(frozen=True)
class LayerSlot:
    """One searchable layer of a space, with everything needed to build any of its candidates."""

    index: int
    stage: int
    block: int  # position inside its stage
    in_channels: int
    out_channels: int
    stride: int
    input_size: int  # spatial side of the layer's input map
    candidates: tuple[OpSpec, ...]
    activation: str = "relu6"

    @property
    def keeps_shape(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    def build(self, op: OpSpec) -> nn.Module:
        """The module of candidate `op` at this layer (its body; the block adds any shortcut)."""
        return op.build(self.in_channels, self.out_channels, self.stride, self.activation)

    def is_identity(self, op: OpSpec) -> bool:
        """Whether `op` computes nothing here (`zero`, or `skip` where the shape is kept)."""
        return is_identity(op, self.in_channels, self.out_channels, self.stride)

    def describe(self) -> str:
        return (
            f"layer {self.index} (stage {self.stage}, block {self.block}: "
            f"{self.in_channels}->{self.out_channels} channels, stride {self.stride})"
        )


@dataclass(frozen=True)
class SearchSpace:
    name: str
    input_size: int
    stem_channels: int
    stem_stride: int
    first_block_channels: int | None  # None: no fixed first block
    stages: tuple[Stage, ...]
    candidates: tuple[OpSpec, ...]
    feature_mix_channels: int
    num_classes: int
    width_mult: float = 1.0
    zero_when_shape_kept: bool = True
    dropout: float = 0.0
    activation: str = "relu6"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpaceError("space 'name' must be a non-empty string")
        for name in ("input_size", "stem_channels", "feature_mix_channels", "num_classes"):
            _check_positive_int(name, getattr(self, name))
        if self.first_block_channels is not None:
            _check_positive_int("first_block_channels", self.first_block_channels)
        if self.activation not in ACTIVATIONS:
            raise SpaceError(f"'activation' must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        _check_stride("stem_stride", self.stem_stride)
        if not self.stages:
            raise SpaceError("'stages' must list at least one stage")
        if not self.candidates:
            raise SpaceError("'candidates' must list at least one op, e.g. [mb_k3_e3, mb_k5_e6]")
        if any(isinstance(op, Zero) for op in self.candidates):
            raise SpaceError("do not list 'zero' in 'candidates'; set 'zero_when_shape_kept: true' instead")
        if len(set(self.candidates)) != len(self.candidates):
            raise SpaceError("'candidates' lists an op twice")
        if Skip() in self.candidates and self.zero_when_shape_kept:
            raise SpaceError("'skip' already is the identity where the shape is kept; "
                             "set 'zero_when_shape_kept: false' in a space that lists it")
        if not (_is_number(self.width_mult) and 0 < self.width_mult <= MAX_SIZE):
            raise SpaceError(f"'width_mult' must be a positive number up to {MAX_SIZE}, got {self.width_mult!r}")
        if not (_is_number(self.dropout) and 0 <= self.dropout < 1):
            raise SpaceError(f"'dropout' must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.zero_when_shape_kept, bool):
            raise SpaceError(f"'zero_when_shape_kept' must be true or false, got {self.zero_when_shape_kept!r}")

    # -- derived layout -------------------------------------------------------------------------

    def channels(self, base_width: int) -> int:
        return make_divisible(base_width * self.width_mult)

    @property
    def stem_out(self) -> int:
        return self.channels(self.stem_channels)

    @property
    def stem_size(self) -> int:
        """Spatial side of the stem's output map."""
        return _down(self.input_size, self.stem_stride)

    @property
    def final_size(self) -> int:
        """Spatial side of the last searchable layer's output map (what the head sees)."""
        return _final_size(self)

    @property
    def has_first_block(self) -> bool:
        return self.first_block_channels is not None

    @property
    def first_block_out(self) -> int:
        """Channels entering the first searchable layer (the stem's when there is no first block)."""
        return self.channels(self.first_block_channels) if self.has_first_block else self.stem_out

    @property
    def last_channels(self) -> int:
        return self.channels(self.stages[-1].width)

    @property
    def feature_mix_out(self) -> int:
        return make_divisible(self.feature_mix_channels * max(1.0, self.width_mult))

    def layers(self) -> tuple[LayerSlot, ...]:
        """The searchable layers, in order, with channels, strides and map sizes resolved (laid out once
        per distinct space: every `Arch` checks its ops against them, and a pool of random nets makes many)."""
        return _layout(self)

    @property
    def num_layers(self) -> int:
        return sum(stage.depth for stage in self.stages)

    def indices_of(self, arch: Arch) -> list[int]:
        """The candidate index that `arch` picks at each searchable layer (the inverse of
        `arch_of_indices`); raises SpaceError naming a layer whose op is not a candidate there."""
        layers = self.layers()
        if len(arch.ops) != len(layers):
            raise SpaceError(f"{arch.name or 'the net'} has {len(arch.ops)} searchable layers; "
                             f"space {self.name!r} has {len(layers)}")
        indices = []
        for slot, op in zip(layers, arch.ops):
            if op not in slot.candidates:
                names = ", ".join(format_op(c) for c in slot.candidates)
                raise SpaceError(f"{arch.name or 'the net'}: {slot.describe()} is {format_op(op)}, "
                                 f"not a candidate there ({names})")
            indices.append(slot.candidates.index(op))
        return indices

    # -- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = [asdict(stage) for stage in self.stages]
        data["candidates"] = [format_op(op) for op in self.candidates]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "search space") -> SearchSpace:
        """Build from plain data (as read from YAML/JSON), with errors that name the field."""
        if not isinstance(data, dict):
            raise SpaceError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        unknown = sorted(str(name) for name in set(data) - known)  # YAML keys need not be strings
        if unknown:
            raise SpaceError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        missing = sorted(required - set(data))
        if missing:
            raise SpaceError(f"{where}: missing field(s) {missing}")
        for name in ("stages", "candidates"):
            if not isinstance(data[name], (list, tuple)):
                raise SpaceError(f"{where}: '{name}' must be a list, got {type(data[name]).__name__}")
        values = dict(data)
        try:
            values["stages"] = tuple(_stage_from(item) for item in data["stages"])
            values["candidates"] = tuple(parse_op(str(op)) for op in data["candidates"])
        except ValueError as err:
            raise SpaceError(f"{where}: {err}") from None
        try:
            return cls(**values)
        except SpaceError as err:
            raise SpaceError(f"{where}: {err}") from None

    def with_task(self, input_size: int, num_classes: int) -> SearchSpace:
        """The same layout for another input size and class count.

        Strides are reduced (stem first, then the first stride-2 stage) until the final feature
        map is at least 4x4, so a 224 px layout becomes the 32 px layout 32->32->16->8->8->4->4.
        """
        space = replace(self, input_size=input_size, num_classes=num_classes)
        while _final_size(space) < 4:
            reduced = _drop_first_stride(space)
            if reduced is None:
                break
            space = reduced
        return space


@lru_cache(maxsize=256)
def _layout(space: SearchSpace) -> tuple[LayerSlot, ...]:
    slots: list[LayerSlot] = []
    in_ch, size = space.first_block_out, _down(space.input_size, space.stem_stride)
    for s, stage in enumerate(space.stages):
        out_ch = space.channels(stage.width)
        for b in range(stage.depth):
            stride = stage.stride if b == 0 else 1
            keeps = stride == 1 and in_ch == out_ch
            extra = (Zero(),) if keeps and space.zero_when_shape_kept else ()
            slots.append(LayerSlot(len(slots), s, b, in_ch, out_ch, stride, size, space.candidates + extra,
                                   space.activation))
            in_ch, size = out_ch, _down(size, stride)
    return tuple(slots)


def _down(size: int, stride: int) -> int:
    return (size + stride - 1) // stride


def _final_size(space: SearchSpace) -> int:
    size = _down(space.input_size, space.stem_stride)
    for stage in space.stages:
        size = _down(size, stage.stride)
    return size


def _drop_first_stride(space: SearchSpace) -> SearchSpace | None:
    if space.stem_stride == 2:
        return replace(space, stem_stride=1)
    for i, stage in enumerate(space.stages):
        if stage.stride == 2:
            stages = space.stages[:i] + (replace(stage, stride=1),) + space.stages[i + 1 :]
            return replace(space, stages=stages)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive_int(name: str, value: Any) -> None:
    if not (_is_int(value) and 0 < value <= MAX_SIZE):
        raise SpaceError(f"'{name}' must be a positive integer up to {MAX_SIZE}, got {value!r}")


def _check_stride(name: str, value: Any) -> None:
    if not (_is_int(value) and value in (1, 2)):
        raise SpaceError(f"'{name}' must be 1 or 2, got {value!r}")


_STAGE_FIELDS = ("width", "depth", "stride")


def _stage_from(item: Any) -> Stage:
    if isinstance(item, dict):
        unknown = sorted(str(name) for name in set(item) - set(_STAGE_FIELDS))
        if unknown:
            raise SpaceError(f"stage has unknown field(s) {unknown}; use width, depth, stride")
        missing = [name for name in _STAGE_FIELDS if name not in item]
        if missing:
            raise SpaceError(f"stage {item!r} lacks {missing}; a stage is {{width, depth, stride}}")
        return Stage(**item)
    if isinstance(item, (list, tuple)) and len(item) == 3:
        return Stage(*item)
    raise SpaceError(f"a stage is {{width, depth, stride}} or [width, depth, stride], got {item!r}")


# -- presets ------------------------------------------------------------------------------------

_PAPER_CANDIDATES = tuple(parse_op(f"mb_k{k}_e{e}") for e in (3, 6) for k in (3, 5, 7))
_PAPER_STAGES = tuple(
    Stage(w, d, s) for w, d, s in zip((24, 40, 80, 96, 192, 320), (4, 4, 4, 4, 4, 1), (2, 2, 2, 1, 2, 1))
)

PROXYLESS_IMAGENET = SearchSpace(
    name="proxyless-imagenet",
    input_size=224,
    stem_channels=32,
    stem_stride=2,
    first_block_channels=16,
    stages=_PAPER_STAGES,
    candidates=_PAPER_CANDIDATES,
    feature_mix_channels=1280,
    num_classes=1000,
)

# The paper's layout at 32 px: stem stride 1 and first-stage stride 1 (maps 32->32->16->8->8->4->4);
# width 0.5 keeps a search affordable on a 2-core CPU.
PROXYLESS_CIFAR = replace(
    PROXYLESS_IMAGENET,
    name="proxyless-cifar",
    input_size=32,
    stem_stride=1,
    stages=(replace(_PAPER_STAGES[0], stride=1),) + _PAPER_STAGES[1:],
    num_classes=10,
    width_mult=0.5,
)

# NAS-Bench-Macro (Su et al., CVPR 2021): 8 layers of 3 choices, every one of its 6,561 nets trained on
# CIFAR-10, so a search can be scored against true accuracies. Candidate i is digit i of its codes:
# 0 identity (here `skip`), 1 MB3_K3, 2 MB6_K5. ReLU, no fixed first block, widths exactly as published
# (width_mult 1 keeps them), and the params and MACs of every net equal the benchmark's.
NAS_BENCH_MACRO = SearchSpace(
    name="nas-bench-macro",
    input_size=32,
    stem_channels=32,
    stem_stride=1,
    first_block_channels=None,
    stages=(Stage(64, 2, 2), Stage(128, 3, 2), Stage(256, 3, 2)),
    candidates=(Skip(), parse_op("mb_k3_e3"), parse_op("mb_k5_e6")),
    feature_mix_channels=1280,
    num_classes=10,
    zero_when_shape_kept=False,
    activation="relu",
)

PRESETS: dict[str, SearchSpace] = {
    space.name: space for space in (PROXYLESS_IMAGENET, PROXYLESS_CIFAR, NAS_BENCH_MACRO)
}


def get_space(name_or_path: str) -> SearchSpace:
    """A preset by name, or a space loaded from a .yaml/.yml/.json file."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return load_space(path)
    raise SpaceError(
        f"unknown search space {name_or_path!r}; use a preset ({', '.join(PRESETS)}) or a .yaml/.json file"
    )


def load_space(path: str | Path) -> SearchSpace:
    return SearchSpace.from_dict(read_space_file(path), where=str(path))


def read_space_file(path: str | Path) -> Any:
    """The plain data of a .yaml/.yml/.json space file (of either kind: see `proxyless.arch_kinds`)."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space file {str(path)!r} does not exist")
    kind = path.suffix[1:].upper()
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except UnicodeDecodeError:
        raise SpaceError(f"{path}: not a text file; expected a search space in {kind}") from None
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as err:  # RecursionError: nested too deeply
        first_line = str(err).splitlines()[0]
        raise SpaceError(f"{path}: not valid {kind}: {first_line}") from None
    return data


def dump_space(space: SearchSpace, path: str | Path) -> None:
    path = Path(path)
    data = space.to_dict()
    text = json.dumps(data, indent=2) if path.suffix.lower() == ".json" else yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(path, text)
