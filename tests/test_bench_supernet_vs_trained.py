"""benchmarks/supernet_vs_trained.py: a round's nets scored by its supernet, beside what training gave them."""

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from helpers import synthetic_table, tiny32_space, trained_like
from proxyless.arch import Arch, load_arch, save_arch
from proxyless.latency.predict import LatencyModel
from proxyless.latency.validate import random_archs
from proxyless.search.quality import subnet_accuracy
from proxyless.search.supernet import SuperNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from supernet_vs_trained import (  # noqa: E402
    Scorer,
    depth_variants,
    expansion_variants,
    percentile,
    residual_scales,
    score_target,
)

SPACE = tiny32_space(("mb_k3_e3", "mb_k5_e3", "mb_k5_e6"), zero_when_shape_kept=True)  # 144 nets


def test_percentile_counts_the_pool_below_and_half_the_ties():
    assert percentile(0.5, [0.1, 0.2, 0.9, 1.0]) == 0.5
    assert percentile(2.0, [0.1, 0.2]) == 1.0 and percentile(0.0, [0.1, 0.2]) == 0.0
    assert percentile(0.2, [0.1, 0.2, 0.3, 0.4]) == 0.375


def test_depth_variants_set_every_optional_layer_alike_and_keep_the_others():
    searched = Arch.from_strings(SPACE, ["mb_k5_e3", "mb_k5_e6", "mb_k3_e3", "zero"], name="s")
    # layers 0 and 2 change shape (stride 2): never zero, so kept as searched
    assert [arch.op_strings() for arch in depth_variants(searched)] == [
        ["mb_k5_e3", "zero", "mb_k3_e3", "zero"],
        ["mb_k5_e3", "mb_k3_e3", "mb_k3_e3", "mb_k3_e3"],
        ["mb_k5_e3", "mb_k5_e6", "mb_k3_e3", "mb_k5_e6"]]


def test_expansion_variants_set_every_mbconv_alike_where_its_kernel_has_that_expansion():
    searched = Arch.from_strings(SPACE, ["mb_k5_e3", "mb_k5_e6", "mb_k3_e3", "zero"], name="s")
    variants = expansion_variants(searched)
    assert [arch.name for arch in variants] == ["s, every expansion 3", "s, every expansion 6"]
    # no mb_k3_e6 in this space: that layer keeps its mb_k3_e3; `zero` stays
    assert [arch.op_strings() for arch in variants] == [["mb_k5_e3", "mb_k5_e3", "mb_k3_e3", "zero"],
                                                         ["mb_k5_e6", "mb_k5_e6", "mb_k3_e3", "zero"]]


def test_residual_scales_start_at_zero_in_the_optional_layers_only():
    for entangled in (True, False):
        scales = residual_scales(SuperNet(SPACE, entangled=entangled))
        assert scales == {"optional": [0.0, 0.0], "fixed": [1.0, 1.0]}
        grown = SuperNet(SPACE, entangled=entangled, residual_init=1.0)
        assert residual_scales(grown)["optional"] == [1.0, 1.0]


def test_each_net_of_the_round_is_scored_on_the_same_images_and_set_beside_its_trainings(tmp_path):
    torch.manual_seed(0)
    supernet = trained_like(SuperNet(SPACE, entangled=True))
    before = {name: value.clone() for name, value in supernet.state_dict().items()}
    valid = TensorDataset(torch.randn(30, 3, 32, 32), torch.randint(0, 10, (30,)))
    train = TensorDataset(torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,)))
    scorer = Scorer(supernet, valid, train, images=20, bn_batches=2, batch_size=10)
    # the round as search_vs_baselines leaves it: its nets' arch files, the finished trainings' results
    searched, *randoms = random_archs(SPACE, 3, seed=1)
    names = ["searched-r_5ms", "random-r_5ms_0", "random-r_5ms_1"]
    for arch, name in zip([searched, *randoms], names):
        save_arch(Arch(arch.space, arch.ops, name), tmp_path / "archs" / f"{name}.json")
    for name, seed, top1 in [("searched-r_5ms", 0, 0.70), ("searched-r_5ms", 1, 0.72), ("random-r_5ms_0", 0, 0.75)]:
        run = tmp_path / "train" / f"{name}_seed{seed}"
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps({"arch": name, "test_top1": top1}))
    args = argparse.Namespace(work=tmp_path, round="r", band_nets=4, seed=0)

    found = score_target("5ms", scorer, LatencyModel(SPACE, synthetic_table(SPACE)), args)

    rows = {row["net"]: row for row in found["rows"]}
    assert [row["net"] for row in found["rows"]] == names  # the searched net first
    assert rows["searched-r_5ms"]["trained_top1"] == 0.71 and rows["searched-r_5ms"]["seeds"] == 2
    assert rows["random-r_5ms_0"]["trained_top1"] == 0.75
    assert rows["random-r_5ms_1"]["trained_top1"] is None  # still training
    assert found["band"]["count"] == 4 and all(0 <= row["band_percentile"] <= 1 for row in found["rows"])
    # a score is the path's top-1 on the scorer's fixed images with BN recalibrated on its fixed batches
    plan = SPACE.indices_of(searched)
    direct = subnet_accuracy(supernet, plan, scorer.loader, scorer.batches, memory_format=torch.channels_last)
    assert rows["searched-r_5ms"]["supernet_top1"] == direct == scorer(searched)
    assert sum(len(y) for _, y in scorer.loader) == 20
    kept = load_arch(tmp_path / "archs" / "searched-r_5ms.json")
    assert [row["net"] for row in found["depth"]] == [arch.name for arch in
                                                      [*depth_variants(kept), *expansion_variants(kept)]]
    after = supernet.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # BN statistics restored too
