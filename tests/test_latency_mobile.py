"""The importer of the ProxylessNAS Pixel 1 latency table (`mobile_trim.yaml`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxyless.latency.keys import OpKey, all_keys, arch_keys
from proxyless.latency.lut import LatencyTableError, Stat, load_lut
from proxyless.latency.mobile import (
    MOBILE_CONTEXT,
    derive_stride,
    parse_key,
    parse_map,
    parse_stat,
    split_key,
    table_from_mobile_yaml,
)
from proxyless.space import PROXYLESS_IMAGENET
from proxyless.zoo import get_zoo_arch

MOBILE_YAML = Path(__file__).resolve().parents[2] / "shared" / "reference" / "mobile_trim.yaml"
STEM = "Conv-input:224x224x3-output:112x112x32"
BLOCK = "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0"
SKIP_BLOCK = "expanded_conv-input:14x14x80-output:14x14x80-expand:6-kernel:7-stride:1-idskip:1"
GOOD_STAT = {"count": 3, "mean": 1.5, "var": 0.1}


def mbconv(size: int, cin: int, cout: int, kernel: int, expand: int, stride: int, skip: bool) -> OpKey:
    return OpKey("mbconv", size, cin, cout, kernel, expand, stride, skip, backend="pixel1-tflite")


@pytest.fixture(scope="module")
def raw() -> dict:
    if not MOBILE_YAML.is_file():
        pytest.skip(f"reference table {MOBILE_YAML} is not present (it lives outside the repository)")
    return yaml.safe_load(MOBILE_YAML.read_text())


@pytest.fixture(scope="module")
def table(raw: dict):  # `raw` skips when the file is absent
    return load_lut(MOBILE_YAML)


# -- the parsing chain --------------------------------------------------------------------------


def test_split_key() -> None:
    assert split_key(STEM) == ("Conv", {"input": "224x224x3", "output": "112x112x32"})


@pytest.mark.parametrize("sizes, stride", [((224, 112), 2), ((7, 4), 2), ((14, 14), 1)])
def test_derive_stride(sizes: tuple[int, int], stride: int) -> None:
    assert derive_stride(*sizes) == stride


def test_parse_map() -> None:
    assert parse_map("112x112x16", "input") == (112, 16)


@pytest.mark.parametrize("text, key", [
    (STEM, OpKey("stem", 224, 3, 32, kernel=3, stride=2, backend="pixel1-tflite")),
    (BLOCK, mbconv(112, 16, 24, 3, 3, 2, False)),
    (SKIP_BLOCK, mbconv(14, 80, 80, 7, 6, 1, True)),
    ("expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:5-stride:1-idskip:0",
     mbconv(112, 32, 16, 5, 1, 1, False)),
    ("Conv_1-input:7x7x320-output:7x7x1280", OpKey("feature_mix", 7, 320, 1280, backend="pixel1-tflite")),
    ("Logits-input:7x7x1280-output:1000", OpKey("classifier", 7, 1280, 1000, backend="pixel1-tflite")),
])
def test_parse_key(text: str, key: OpKey) -> None:
    assert parse_key(text) == key
    assert (key.batch, key.dtype) == (1, "float32")


def test_parse_stat() -> None:
    assert parse_stat(GOOD_STAT) == Stat(mean=1.5, var=0.1, count=3)


# -- the real reference table -------------------------------------------------------------------


def test_reference_table_entries(raw: dict, table) -> None:
    assert len(raw) == len(table.entries) == 72
    assert table.context == MOBILE_CONTEXT
    assert table.header["unit"] == "ms" and table.header["source"] == str(MOBILE_YAML)
    assert {key.kind for key in table.entries} == {"stem", "mbconv", "feature_mix", "classifier"}
    assert table.entries[parse_key(STEM)] == Stat(4.083755600814664, 0.2502372872758427, 982)
    for text in (STEM, BLOCK, SKIP_BLOCK, "Logits-input:7x7x1280-output:1000"):
        stat = table.entries[parse_key(text)]
        assert (stat.mean, stat.var, stat.count) == (raw[text]["mean"], raw[text]["var"], raw[text]["count"])


def test_reference_table_is_deterministic(raw: dict, table) -> None:
    again = table_from_mobile_yaml(raw, where=str(MOBILE_YAML))
    assert again == table and list(again.entries) == list(table.entries)


def test_reference_table_covers_proxyless_imagenet(table) -> None:
    table.check_covers(PROXYLESS_IMAGENET)
    # The table also holds the first block with kernels 5 and 7, which the space never asks for.
    extra = set(table.entries) - set(all_keys(PROXYLESS_IMAGENET, table.context))
    assert extra == {mbconv(112, 32, 16, k, 1, 1, False) for k in (5, 7)}


def test_reference_table_lacks_the_wider_first_stage_of_proxyless_mobile(table) -> None:
    arch = get_zoo_arch("proxyless_mobile")  # first stage 32 wide; the searched space's is 24
    missing = table.missing(arch_keys(arch, table.context))
    assert missing == [mbconv(112, 16, 32, 5, 3, 2, False), mbconv(56, 32, 32, 3, 3, 1, True),
                       mbconv(56, 32, 40, 7, 3, 2, False)]
    with pytest.raises(LatencyTableError, match=r"18 missing entries: mbconv 112x112x16->32 k3 e3 s2;"):
        table.check_covers(arch.space)


# -- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("Pool-input:7x7x1280-output:1x1x1280", "unknown op 'Pool'"),
    ("Conv-input:224x224x3", "expected a key of the form Conv-input"),
    ("Conv-input:224x224-output:112x112x32", "must be a map HxWxC"),
    ("Conv-input:224x200x3-output:112x112x32", "square map"),
    ("Conv-input:224x224x3-output:100x100x32", "no stride maps"),
    (BLOCK.replace("stride:2", "stride:1"), "stride 1 maps a 112-pixel side to 112, not 56"),
    (BLOCK.replace("idskip:0", "idskip:1"), "idskip:1 (identity shortcut) needs stride 1"),
    (BLOCK.replace("idskip:0", "idskip:yes"), "idskip must be 0 or 1"),
    (BLOCK.replace("kernel:3", "kernel:-3"), "not a new 'field:value'"),
    (BLOCK.replace("expand:3", "expand:03"), "expand must be a positive integer"),
    ("Logits-input:7x7x1280-output:lots", "output must be a positive integer"),
])
def test_bad_key_is_rejected_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(LatencyTableError) as info:
        table_from_mobile_yaml({STEM: GOOD_STAT, text: GOOD_STAT}, where="t.yaml")
    message = str(info.value)
    assert message.startswith(f"t.yaml: entry {text!r}: ") and expected in message and "\n" not in message


@pytest.mark.parametrize("value", [
    {"count": 3, "mean": -1.0, "var": 0.1},
    {"count": 0, "mean": 1.0, "var": 0.1},
    {"count": 3, "mean": 1.0, "var": float("nan")},
    {"count": 3, "mean": "fast", "var": 0.1},
    {"count": True, "mean": 1.0, "var": 0.1},
    {"count": 3, "mean": 1.0},
    {"count": 3, "mean": 1.0, "var": 0.1, "std": 0.3},
    [3, 1.0, 0.1],
    1.0,
])
def test_bad_value_is_rejected_naming_the_key(value: object) -> None:
    with pytest.raises(LatencyTableError, match=rf"^t\.yaml: entry '{STEM}': expected \{{count: integer >= 1"):
        table_from_mobile_yaml({STEM: value}, where="t.yaml")


def test_same_op_twice_is_rejected() -> None:
    reordered = "Conv-output:112x112x32-input:224x224x3"  # the same stem, fields swapped
    with pytest.raises(LatencyTableError, match=f"entry '{reordered}': a second entry for stem"):
        table_from_mobile_yaml({STEM: GOOD_STAT, reordered: GOOD_STAT})


@pytest.mark.parametrize("data", [[{STEM: GOOD_STAT}], "Conv", None, {}])
def test_not_a_mapping_is_rejected(data: object) -> None:
    with pytest.raises(LatencyTableError, match="expected a non-empty mapping of op keys"):
        table_from_mobile_yaml(data)


def test_non_string_key_is_rejected() -> None:
    with pytest.raises(LatencyTableError, match="entry 42: expected a string key"):
        table_from_mobile_yaml({42: GOOD_STAT})


def test_load_lut_reports_malformed_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"{STEM}:\n  count: 1\n  mean: -2.0\n  var: 0.0\n")
    with pytest.raises(LatencyTableError, match=rf"bad\.yaml: entry '{STEM}'"):
        load_lut(path)


def test_search_for_the_pixel1_with_the_imported_table(table, tmp_path, capsys, monkeypatch, sample_splits) -> None:
    """A hardware-aware search of proxyless-imagenet for the phone, on real images resized to 224 px."""
    import json

    from PIL import Image

    from proxyless.cli import main
    from proxyless.latency.predict import LatencyModel
    from proxyless.search.hardware import reachable

    monkeypatch.setenv("PROXYLESS_CACHE", str(tmp_path / "cache"))
    sample = sample_splits.train
    for i in range(30):  # 30 real CIFAR-10 images as a tiny ImageFolder
        image, label = sample.images[sample.indices[i]], int(sample.labels[sample.indices[i]])
        folder = tmp_path / "data" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.jpg")
    fastest, slowest = reachable(LatencyModel(PROXYLESS_IMAGENET, table))
    target = (fastest + slowest) / 2
    code = main(["search", "--space", "proxyless-imagenet", "--lut", str(MOBILE_YAML), "--target-latency",
                 f"{target:.2f}ms", "--data", str(tmp_path / "data"),
                 "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "4", "--limit-images", "8",
                 "--valid-size", "0.2", "--arch-every", "1", "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "not measured here: the table was measured on" in printed
    result = json.loads((tmp_path / "run" / "latency.json").read_text())
    assert abs(result["predicted_ms"] / target - 1) <= 0.05 and result["measured_ms"] is None
