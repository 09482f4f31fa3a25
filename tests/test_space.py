import json
from dataclasses import replace

import pytest

from proxyless.arch_kinds import arch_of_indices
from proxyless.ops import Zero, parse_op
from proxyless.space import (
    PRESETS,
    PROXYLESS_CIFAR,
    PROXYLESS_IMAGENET,
    SearchSpace,
    SpaceError,
    dump_space,
    get_space,
    load_space,
)


def test_imagenet_preset_is_the_papers_space():
    layers = PROXYLESS_IMAGENET.layers()
    assert len(layers) == 21
    assert [len(s.candidates) for s in layers].count(6) == 6  # the first layer of each stage: no zero
    assert all(len(s.candidates) in (6, 7) for s in layers)
    assert [s.input_size for s in layers if s.block == 0] == [112, 56, 28, 14, 14, 7]
    assert PROXYLESS_IMAGENET.stem_out == 32 and PROXYLESS_IMAGENET.feature_mix_out == 1280


def test_cifar_preset_map_sizes():
    sizes = [PROXYLESS_CIFAR.input_size // PROXYLESS_CIFAR.stem_stride]
    sizes += [s.input_size // s.stride for s in PROXYLESS_CIFAR.layers() if s.block == 0]
    assert sizes == [32, 32, 16, 8, 8, 4, 4]


def test_with_task_derives_the_cifar_layout():
    adapted = PROXYLESS_IMAGENET.with_task(32, 10)
    assert adapted.stem_stride == PROXYLESS_CIFAR.stem_stride
    assert adapted.stages == PROXYLESS_CIFAR.stages
    assert PROXYLESS_IMAGENET.with_task(224, 5).stages == PROXYLESS_IMAGENET.stages


def test_zero_only_where_shape_kept():
    for slot in PROXYLESS_IMAGENET.layers():
        assert (Zero() in slot.candidates) == slot.keeps_shape
    no_zero = replace(PROXYLESS_IMAGENET, zero_when_shape_kept=False)
    assert all(Zero() not in s.candidates for s in no_zero.layers())


def test_width_multiplier_makes_channels_divisible_by_8():
    space = replace(PROXYLESS_IMAGENET, width_mult=0.35)
    assert all(s.out_channels % 8 == 0 for s in space.layers())
    assert space.feature_mix_out == 1280


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_space_file_round_trip(tmp_path, name, suffix):
    path = tmp_path / f"space{suffix}"
    dump_space(PRESETS[name], path)
    assert load_space(path) == PRESETS[name]
    assert get_space(str(path)) == PRESETS[name]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"stem_stride": 3}, "'stem_stride' must be 1 or 2"),
        ({"candidates": ["mb_k4_e3"]}, "unknown op 'mb_k4_e3'"),
        ({"candidates": ["zero"]}, "do not list 'zero'"),
        ({"stages": []}, "at least one stage"),
        ({"stages": [{"width": 24, "depth": 0, "stride": 2}]}, "'stage depth' must be a positive integer"),
        ({"stages": [{"width": 24, "depth": 2, "stride": 2, "kernel": 3}]}, "unknown field"),
        ({"input_size": -1}, "'input_size' must be a positive integer"),
        ({"width_mult": 0}, "'width_mult' must be a positive number"),
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ],
)
def test_invalid_space_names_the_field(tmp_path, change, message):
    data = {**PROXYLESS_CIFAR.to_dict(), **change}
    path = tmp_path / "space.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpaceError, match=message):
        load_space(path)


def test_missing_field_and_bad_syntax(tmp_path):
    data = PROXYLESS_CIFAR.to_dict()
    del data["stages"]
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(SpaceError, match=r"missing field\(s\) \['stages'\]"):
        load_space(tmp_path / "a.json")
    (tmp_path / "b.yaml").write_text("stages: [unclosed\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(tmp_path / "b.yaml")
    with pytest.raises(SpaceError, match="unknown search space 'nope'"):
        get_space("nope")


def test_spaces_are_frozen():
    with pytest.raises(AttributeError):
        PROXYLESS_CIFAR.width_mult = 2.0
    assert isinstance(hash(PROXYLESS_CIFAR), int)
    assert isinstance(PROXYLESS_CIFAR, SearchSpace)


def test_indices_of_inverts_arch_of_indices():
    layers = PROXYLESS_CIFAR.layers()
    indices = [(3 * i + 1) % len(slot.candidates) for i, slot in enumerate(layers)]
    assert PROXYLESS_CIFAR.indices_of(arch_of_indices(PROXYLESS_CIFAR, indices)) == indices


def test_indices_of_names_the_layer_a_net_of_another_space_does_not_fit():
    other = replace(PROXYLESS_CIFAR, candidates=(parse_op("mb_k3_e3"), parse_op("mb_k3_e1")))
    net = arch_of_indices(other, [1] * other.num_layers, name="thin-expansion")
    with pytest.raises(SpaceError, match=r"thin-expansion: .* is mb_k3_e1, not a candidate there \(mb_k3_e3, "):
        PROXYLESS_CIFAR.indices_of(net)
    shallow = arch_of_indices(replace(PROXYLESS_CIFAR, stages=PROXYLESS_CIFAR.stages[:1]), [0] * 4, name="short")
    with pytest.raises(SpaceError, match="short has 4 searchable layers; space 'proxyless-cifar' has 21"):
        PROXYLESS_CIFAR.indices_of(shallow)
