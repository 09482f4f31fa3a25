"""Property tests (Hypothesis) for every parser of user input.

Each parser gets two properties:
  (a) a round trip on generated valid input (parse(format(x)) == x, save -> load == x);
  (b) robustness on arbitrary input (random text and bytes, random JSON/YAML-like values, valid
      dicts with a key dropped, a value replaced or a key added): the call succeeds or raises its
      documented error (a `UserError`, or ValueError for the internal record parsers) with a
      one-line message, never TypeError, KeyError, OverflowError, RecursionError, ...
A parse that succeeds must also give something usable: the layers of an accepted space have integer
sizes, an accepted latency table can be read and saved again.

Runs are reproducible (derandomized, no example database) and take about 10 s.  Bugs the properties
found are pinned at the end as regression cases.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers import tiny_space
from proxyless.arch import Arch, load_arch, save_arch
from proxyless.data.sources import parse_source
from proxyless.errors import UserError
from proxyless.latency.keys import KINDS, OpKey
from proxyless.latency.lut import LatencyTable, Stat, load_lut, save_lut
from proxyless.latency.mobile import MOBILE_CONTEXT, format_key, parse_key, table_from_mobile_yaml
from proxyless.latency.predict import calibration_of
from proxyless.latency.validate import network_config
from proxyless.net import build_net
from proxyless.ops import CANDIDATE_OPS, EXPAND_RATIOS, KERNEL_SIZES, MBConv, Zero, format_op, parse_op
from proxyless.search.loop import SearchConfig
from proxyless.space import PROXYLESS_CIFAR, SearchSpace, Stage, dump_space, get_space, load_space
from proxyless.train import TrainConfig
from proxyless.zoo import get_zoo_arch
from proxyless.zoo.legacy import arch_from_legacy, legacy_from_net

PROPERTY = settings(database=None, derandomize=True, deadline=None, max_examples=100,
                    suppress_health_check=[HealthCheck.too_slow])
WRITES_FILES = settings(PROPERTY, max_examples=50)  # each example saves with an fsync

# -- strategies ---------------------------------------------------------------------------------

INF, NAN, HUGE = math.inf, math.nan, 10**400
NASTY_NUMBERS = [math.nan, math.inf, -math.inf, -1, 0, -0.0, 1e308, 10**400, 2**63, True, False]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(NASTY_NUMBERS))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# YAML mappings may have keys of any scalar type
yaml_keys = st.text(max_size=8) | st.integers() | st.none() | st.booleans() | st.floats(allow_nan=False)
yaml_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(yaml_keys, children, max_size=4),
    max_leaves=12,
)
MBCONV_OPS = [op for op in CANDIDATE_OPS.values() if isinstance(op, MBConv)]


@st.composite
def mutations_of(draw: st.DrawFn, value: Any, edits: int = 3) -> Any:
    """`value` (nested dicts and lists) with 1..`edits` random edits: an entry dropped, replaced by a
    random JSON/YAML value, or a new entry added, each at a random depth."""
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, edits))):
        container = value
        while True:  # 1. walk down to a random container
            children = [c for c in (container.values() if isinstance(container, dict) else container)
                        if isinstance(c, (dict, list)) and c]
            if not children or draw(st.booleans()):
                break
            container = draw(st.sampled_from(children))
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        action = draw(st.sampled_from(("drop", "replace", "add") if keys else ("add",)))
        if action == "drop":  # 2. edit it
            del container[draw(st.sampled_from(keys))]
        elif action == "replace":
            container[draw(st.sampled_from(keys))] = draw(yaml_values)
        elif isinstance(container, dict):
            container[draw(yaml_keys)] = draw(yaml_values)
        else:
            container.append(draw(yaml_values))
    return value


@st.composite
def small_spaces(draw: st.DrawFn) -> SearchSpace:
    """Valid spaces of at most 6 layers."""
    stage = st.builds(Stage, width=st.sampled_from([8, 16, 24]), depth=st.integers(1, 2),
                      stride=st.sampled_from([1, 2]))
    return SearchSpace(
        name=draw(st.text(min_size=1, max_size=10)),
        input_size=draw(st.integers(1, 64)),
        stem_channels=draw(st.integers(1, 32)),
        stem_stride=draw(st.sampled_from([1, 2])),
        first_block_channels=draw(st.integers(1, 32)),
        stages=tuple(draw(st.lists(stage, min_size=1, max_size=3))),
        candidates=tuple(draw(st.lists(st.sampled_from(MBCONV_OPS), min_size=1, max_size=4, unique=True))),
        feature_mix_channels=draw(st.integers(1, 64)),
        num_classes=draw(st.integers(1, 1000)),
        width_mult=draw(st.floats(0.1, 4.0)),
        zero_when_shape_kept=draw(st.booleans()),
        dropout=draw(st.floats(0.0, 0.99)),
    )


@st.composite
def small_archs(draw: st.DrawFn) -> Arch:
    space = draw(small_spaces())
    ops = tuple(draw(st.sampled_from(slot.candidates)) for slot in space.layers())
    return Arch(space, ops, draw(st.text(max_size=10)))


sizes = st.integers(1, 512)
op_keys = st.builds(
    OpKey, kind=st.sampled_from(KINDS), input_size=sizes, in_channels=sizes, out_channels=sizes,
    kernel=st.sampled_from(KERNEL_SIZES), expand=st.sampled_from(EXPAND_RATIOS), stride=st.sampled_from([1, 2]),
    shortcut=st.booleans(), batch=st.integers(1, 256), dtype=st.sampled_from(["float32", "float16"]),
    backend=st.text(min_size=1, max_size=10),
)
stats = st.builds(Stat, mean=st.floats(0, 1e6), var=st.floats(0, 1e6), count=st.integers(1, 10**6))
headers = st.fixed_dictionaries(
    {"backend": st.text(min_size=1, max_size=10)},
    optional={"batch": st.integers(1, 256), "dtype": st.just("float32"), "device": st.text(max_size=10),
              "threads": st.integers(0, 64), "calibration": st.fixed_dictionaries({"scale": st.floats(0.1, 10),
                                                                                 "offset": st.floats(-10, 10)})},
)
tables = st.builds(LatencyTable, header=headers, entries=st.dictionaries(op_keys, stats, max_size=6))


def mobile_key_texts() -> st.SearchStrategy[str]:
    """Canonical key strings of the mobile table (fields in the published order)."""

    @st.composite
    def maps(draw: st.DrawFn) -> tuple[int, int, int]:
        size, stride = draw(sizes), draw(st.sampled_from([1, 2, 3]))
        return size, -(-size // stride), stride

    def io(size: int, out: int, cin: int, cout: int) -> str:
        return f"input:{size}x{size}x{cin}-output:{out}x{out}x{cout}"

    stem = st.builds(lambda m, c: f"Conv-{io(m[0], m[1], 3, c)}", maps(), sizes)
    mix = st.builds(lambda s, a, b: f"Conv_1-{io(s, s, a, b)}", sizes, sizes, sizes)
    logits = st.builds(lambda s, a, n: f"Logits-input:{s}x{s}x{a}-output:{n}", sizes, sizes, sizes)

    @st.composite
    def block(draw: st.DrawFn) -> str:
        size, out, stride = draw(maps())
        cin, cout = draw(sizes), draw(sizes)
        skip = draw(st.booleans()) and stride == 1 and cin == cout
        return (f"expanded_conv-{io(size, out, cin, cout)}-expand:{draw(st.sampled_from(EXPAND_RATIOS))}-"
                f"kernel:{draw(st.sampled_from(KERNEL_SIZES))}-stride:{stride}-idskip:{int(skip)}")

    return stem | mix | logits | block()


def user_error_or(call: Callable[[], Any], error: type[Exception] = UserError) -> Any:
    """`call()`'s result, or None when it raised `error` with a one-line, non-empty message.

    Any other exception propagates: that is the bug the robustness properties look for.
    """
    try:
        return call()
    except error as err:
        message = str(err)
        assert message.strip() and "\n" not in message, f"not a one-line message: {message!r}"
        return None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("properties")


# -- op strings ---------------------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from(list(CANDIDATE_OPS)), st.sampled_from(["", " ", "\t", "\n"]))
def test_op_string_round_trip(text: str, padding: str) -> None:
    op = parse_op(padding + text + padding)
    assert format_op(op) == text and parse_op(format_op(op)) == op


@PROPERTY
@given(st.sampled_from(KERNEL_SIZES), st.sampled_from(EXPAND_RATIOS))
def test_op_grammar(kernel: int, expand: int) -> None:
    assert parse_op(f"mb_k{kernel}_e{expand}") == MBConv(kernel, expand)
    assert parse_op("zero") == Zero()


@PROPERTY
@given(st.text() | st.from_regex(r"\s*(mb_k-?\d{1,3}_e-?\d{1,3}|zero|ZERO|mb)\s*", fullmatch=True) | json_values)
@example("mb_k4_e3")
def test_parse_op_robust(text: Any) -> None:
    op = user_error_or(lambda: parse_op(text))
    if op is not None:
        assert format_op(op) == text.strip()


# -- architectures ------------------------------------------------------------------------------


@WRITES_FILES
@given(small_archs())
def test_arch_round_trip(workdir, arch: Arch) -> None:
    assert Arch.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    assert load_arch(save_arch(arch, workdir / "arch.json")) == arch


ARCH_DICT = Arch(PROXYLESS_CIFAR, tuple(slot.candidates[-1] for slot in PROXYLESS_CIFAR.layers()), "a").to_dict()
SPACE_DICT = PROXYLESS_CIFAR.to_dict()


@PROPERTY
@given(json_values | yaml_values | mutations_of(ARCH_DICT))
@example({"space": {**SPACE_DICT, "stages": [[HUGE, 1, 1]]}, "ops": ["mb_k3_e3"]})  # was OverflowError
@example({"space": {**SPACE_DICT, "stages": [[8, 10**6, 1]]}, "ops": ["mb_k3_e3"]})  # laid out 10**6 layers first
@example({"space": {**SPACE_DICT, 1: 2, "x": 3}, "ops": []})  # was TypeError (sorting int and str keys)
def test_arch_from_dict_robust(data: Any) -> None:
    arch = user_error_or(lambda: Arch.from_dict(data))
    if arch is not None:
        assert Arch.from_dict(arch.to_dict()) == arch


@PROPERTY
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode)
       | json_values.map(lambda value: json.dumps(value).encode()))
@example(b"\x80")
def test_load_arch_robust(workdir, content: bytes) -> None:
    path = workdir / "random_arch.json"
    path.write_bytes(content)
    user_error_or(lambda: load_arch(path))


TINY = tiny_space()
LEGACY_DICT = legacy_from_net(build_net(Arch(TINY, (MBConv(3, 3), Zero(), MBConv(5, 6)), "tiny")))


def with_block_field(name: str, value: Any, block: int = 1) -> dict[str, Any]:
    config = copy.deepcopy(LEGACY_DICT)
    config["blocks"][block]["mobile_inverted_conv"][name] = value
    return config


@PROPERTY
@given(json_values | mutations_of(LEGACY_DICT))
@example(with_block_field("kernel_size", 3.0))  # was accepted as the op 'mb_k3.0_e3', which no parser reads back
@example(with_block_field("expand_ratio", True))  # 'mb_k3_eTrue'
def test_legacy_config_robust(data: Any) -> None:
    arch = user_error_or(lambda: arch_from_legacy(data))
    if arch is not None:
        assert Arch.from_dict(arch.to_dict()) == arch


@PROPERTY
@given(st.text(max_size=20))
def test_zoo_names_robust(name: str) -> None:
    user_error_or(lambda: get_zoo_arch(name))


@PROPERTY
@given(st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=20))
def test_data_source_robust(text: str) -> None:
    user_error_or(lambda: parse_source(text))
    user_error_or(lambda: parse_source("cifar10:" + text))


# -- search spaces ------------------------------------------------------------------------------


@WRITES_FILES
@given(small_spaces(), st.sampled_from([".json", ".yaml"]))
def test_space_round_trip(workdir, space: SearchSpace, suffix: str) -> None:
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    path = workdir / f"space{suffix}"
    dump_space(space, path)
    assert load_space(path) == space


def check_usable(space: SearchSpace) -> None:
    """An accepted space has its declared field types, round-trips and, when small, lays out integer layers."""
    assert isinstance(space.zero_when_shape_kept, bool) and math.isfinite(space.width_mult)
    assert SearchSpace.from_dict(space.to_dict()) == space
    if space.num_layers <= 50:
        for slot in space.layers():
            values = (slot.in_channels, slot.out_channels, slot.stride, slot.input_size)
            assert all(type(v) is int and v > 0 for v in values), slot


@PROPERTY
@given(json_values | yaml_values | mutations_of(SPACE_DICT))
@example({"": None, None: None})  # was TypeError: unknown fields of several types could not be sorted
@example({**SPACE_DICT, "stages": [{"width": 8, "depth": 1, 1: 2, "x": 3}]})  # in a stage: the TypeError's text
@example({**SPACE_DICT, "stem_stride": 2.0})  # was accepted, then laid out float map sizes
@example({**SPACE_DICT, "stages": [[24, 1, True]]})  # a bool stride: the same
@example({**SPACE_DICT, "width_mult": INF})  # was accepted, then OverflowError laying out the channels
@example({**SPACE_DICT, "stages": [[HUGE, 1, 1]]})  # was accepted, then OverflowError (int too large for a float)
@example({**SPACE_DICT, "zero_when_shape_kept": "false"})  # was accepted, and read as true
def test_space_from_dict_robust(data: Any) -> None:
    space = user_error_or(lambda: SearchSpace.from_dict(data))
    if space is not None:
        check_usable(space)


@PROPERTY
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode), st.sampled_from([".json", ".yaml"]))
@example(b"\x80", ".json")  # was UnicodeDecodeError
@example(b"[" * 1000, ".json")  # was RecursionError
@example(b"[" * 1000, ".yaml")
def test_load_space_robust(workdir, content: bytes, suffix: str) -> None:
    path = workdir / f"random_space{suffix}"
    path.write_bytes(content)
    user_error_or(lambda: load_space(path))


@PROPERTY
@given(st.text(max_size=20))
def test_get_space_robust(name: str) -> None:
    user_error_or(lambda: get_space(name))


# -- latency-table keys and tables --------------------------------------------------------------


@PROPERTY
@given(op_keys)
def test_op_key_round_trip(key: OpKey) -> None:
    assert OpKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key


@PROPERTY
@given(json_values | yaml_values | mutations_of(OpKey("mbconv", 8, 16, 24, 5, 3, 2).to_dict()))
@example({"kind": "mbconv", "input_size": "8", "in_channels": 16, "out_channels": 24})  # was accepted: sorting failed
@example({"kind": "mbconv", "in_channels": 16, "out_channels": 24})  # was TypeError (a missing argument)
def test_op_key_from_dict_robust(data: Any) -> None:
    key = user_error_or(lambda: OpKey.from_dict(data), ValueError)
    if key is not None:  # usable: described, sorted among the keys of a space, and back to the same dict
        assert key.describe() and sorted([key, OpKey(key.kind, 8, 16, 24, 5, 3, 2)])
        assert OpKey.from_dict(key.to_dict()) == key


@PROPERTY
@given(mobile_key_texts())
def test_mobile_key_round_trip(text: str) -> None:
    key = parse_key(text)
    assert format_key(key) == text and parse_key(format_key(key)) == key


@PROPERTY
@given(st.text(max_size=40) | st.tuples(mobile_key_texts(), st.integers(0, 99), st.text(max_size=2)).map(
    lambda case: case[0][:case[1]] + case[2] + case[0][case[1] + 1:]))  # one character replaced
def test_mobile_parse_key_robust(text: str) -> None:
    user_error_or(lambda: parse_key(text), ValueError)


@WRITES_FILES
@given(tables)
def test_lut_save_load_round_trip(workdir, table: LatencyTable) -> None:
    loaded = load_lut(save_lut(table, workdir / "lut.json"))
    assert loaded.header == table.header and loaded.entries == table.entries
    assert LatencyTable.from_dict(json.loads(json.dumps(table.to_dict()))).entries == table.entries


def check_readable(table: LatencyTable, workdir) -> None:
    """What the commands read from an accepted table can be read, and it saves and loads again."""
    context, calibration = table.context, calibration_of(table)
    assert context.batch >= 1 and math.isfinite(calibration.scale) and math.isfinite(calibration.offset)
    assert network_config(table.header).threads >= 0
    user_error_or(lambda: get_space(table.header.get("space", "")))  # `lut validate` without --space
    assert load_lut(save_lut(table, workdir / "accepted.json")).entries == table.entries


LUT_DICT = LatencyTable(
    {"backend": "torch-cpu", "batch": 2, "dtype": "float32", "threads": 1,
     "calibration": {"scale": 1.0, "offset": 0.5}},
    {OpKey("stem", 32, 3, 16): Stat(0.5, 0.01, 3), OpKey("mbconv", 32, 16, 24, 5, 3, 2): Stat(1.5)},
).to_dict()


def lut_with(header: dict[str, Any] | None = None, entries: Any = None) -> dict[str, Any]:
    return {**LUT_DICT, "header": {**LUT_DICT["header"], **(header or {})}, "entries": entries or LUT_DICT["entries"]}


STEM_KEY = OpKey("stem", 32, 3, 16).to_dict()


@PROPERTY
@given(json_values | yaml_values | mutations_of(LUT_DICT))
@example(lut_with(entries=5))  # was TypeError: 'int' object is not iterable
@example(lut_with(entries=[{"key": STEM_KEY, "mean": 1.0, "count": INF}]))  # was OverflowError
# a key with a text size was accepted, then saving the table could not sort its keys
@example(lut_with(entries=[{"key": STEM_KEY, "mean": 1.0}, {"key": {**STEM_KEY, "input_size": "32"}, "mean": 1.0}]))
@example(lut_with({"batch": None}))  # was accepted: reading its context raised TypeError
@example(lut_with({"threads": "two"}))  # was accepted: ValueError in network_config
@example(lut_with({"calibration": {"scale": "x"}}))  # was accepted: ValueError in calibration_of
@example(lut_with({"space": 7}))  # was accepted: TypeError in get_space
def test_lut_from_dict_robust(workdir, data: Any) -> None:
    table = user_error_or(lambda: LatencyTable.from_dict(data))
    if table is not None:
        check_readable(table, workdir)


@PROPERTY
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode), st.sampled_from([".json", ".yaml"]))
@example(b"\x80", ".yaml")  # was UnicodeDecodeError
@example(b"[" * 1000, ".yaml")  # was RecursionError
def test_load_lut_robust(workdir, content: bytes, suffix: str) -> None:
    path = workdir / f"random_lut{suffix}"
    path.write_bytes(content)
    user_error_or(lambda: load_lut(path))


MOBILE_DICT = {
    "Conv-input:224x224x3-output:112x112x32": {"count": 3, "mean": 4.1, "var": 0.25},
    "expanded_conv-input:14x14x80-output:14x14x80-expand:6-kernel:7-stride:1-idskip:1":
        {"count": 9, "mean": 2.0, "var": 0.1},
    "Logits-input:7x7x1280-output:1000": {"count": 1, "mean": 0.5, "var": 0.0},
}


@PROPERTY
@given(json_values | yaml_values | mutations_of(MOBILE_DICT))
def test_mobile_table_robust(workdir, data: Any) -> None:
    table = user_error_or(lambda: table_from_mobile_yaml(data))
    if table is not None:
        check_readable(table, workdir)
        assert table.context == MOBILE_CONTEXT


# -- configs ------------------------------------------------------------------------------------


@st.composite
def typed_changes(draw: st.DrawFn, config: type) -> dict[str, Any]:
    """One to three fields of `config` set to values of their declared types (what the CLI's typed flags
    pass), floats with nan and inf, ints up to huge."""
    by_type = {"int": st.integers(-3, 100) | st.sampled_from([2**63, HUGE]), "float": st.floats(),
               "bool": st.booleans(), "str": st.text(max_size=10) | st.sampled_from(["gradient", "reinforce", "full"])}
    by_type["int | None"] = st.none() | by_type["int"]  # e.g. SearchConfig.warmup_epochs: None picks the default
    by_type["float | None"] = st.none() | by_type["float"]  # e.g. SearchConfig.arch_lr: None scales it to the run
    fields = config.__dataclass_fields__
    names = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True))
    return {name: draw(by_type[str(fields[name].type)]) for name in names}


@PROPERTY
@given(st.sampled_from([TrainConfig, SearchConfig]).flatmap(lambda c: st.tuples(st.just(c), typed_changes(c))))
def test_config_validation(case: tuple[type, dict[str, Any]]) -> None:
    config, values = case
    user_error_or(lambda: config(**values))


# Regressions: bugs the properties above found (each crashed or was accepted before its fix).
CONFIG_BUGS = [
    # TypeError: values compared before their type is checked; --resume reads them from config.json
    # (None became the default warmup_epochs, so the row checks a value of the wrong type instead)
    pytest.param(SearchConfig, {"warmup_epochs": "1"}, id="search-warmup_epochs-text"),
    pytest.param(SearchConfig, {"lr": "0.1"}, id="search-lr-text"),
    # accepted: nan passes `x < 0` and `x <= 0`, inf passes every check (argparse reads `--lr inf` as a float)
    pytest.param(TrainConfig, {"weight_decay": NAN}, id="train-weight_decay-nan"),
    pytest.param(TrainConfig, {"warmup_epochs": INF}, id="train-warmup_epochs-inf"),  # OverflowError in Trainer
    pytest.param(TrainConfig, {"lr": INF}, id="train-lr-inf"),
    pytest.param(SearchConfig, {"lr": NAN}, id="search-lr-nan"),
    pytest.param(SearchConfig, {"arch_lr": INF}, id="search-arch_lr-inf"),
]


@pytest.mark.parametrize("config,values", CONFIG_BUGS)
def test_config_bugs(config: type, values: dict[str, Any]) -> None:
    with pytest.raises(UserError):
        config(**values)


def test_legacy_config_with_text_dropout() -> None:
    config = copy.deepcopy(LEGACY_DICT)
    config["classifier"]["dropout_rate"] = "x"
    user_error_or(lambda: arch_from_legacy(config))


def test_data_source_with_newline() -> None:
    user_error_or(lambda: parse_source("\n"))


@pytest.mark.parametrize("load", [load_arch, load_lut])
def test_deeply_nested_json_files(workdir, load: Callable) -> None:
    path = workdir / "deep.json"
    path.write_text("[" * 1000)
    user_error_or(lambda: load(path))
