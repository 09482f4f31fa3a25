import json
import random

import pytest
import torch

from proxyless.arch import Arch, ArchError, load_arch, save_arch
from proxyless.net import build_net
from proxyless.ops import MBConv, Zero
from proxyless.space import PRESETS, PROXYLESS_CIFAR


def random_arch(space, seed=0):
    rng = random.Random(seed)
    return Arch(space, tuple(rng.choice(slot.candidates) for slot in space.layers()), "random")


@pytest.mark.parametrize("name", list(PRESETS))
def test_arch_json_round_trip(tmp_path, name):
    arch = random_arch(PRESETS[name], seed=1)
    save_arch(arch, tmp_path / "arch.json")
    assert load_arch(tmp_path / "arch.json") == arch
    assert Arch.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


def test_wrong_length():
    with pytest.raises(ArchError, match="has 3 ops but space 'proxyless-cifar' has 21 searchable layers"):
        Arch.from_strings(PROXYLESS_CIFAR, ["mb_k3_e3"] * 3)


def test_unknown_op_names_the_layer():
    ops = ["mb_k3_e3"] * 21
    ops[5] = "mb_k9_e3"
    with pytest.raises(ArchError, match=r"layer 5: unknown op 'mb_k9_e3'"):
        Arch.from_strings(PROXYLESS_CIFAR, ops)


def test_zero_where_shape_changes_names_the_layer():
    ops = ["mb_k3_e3"] * 21
    ops[4] = "zero"  # first block of stage 1: 16 -> 24 channels, stride 2
    with pytest.raises(ArchError,
                       match=r"layer 4 \(stage 1, block 0: 16->24 channels, stride 2\): op 'zero' is not allowed"):
        Arch.from_strings(PROXYLESS_CIFAR, ops)


def test_op_outside_candidates():
    ops = ["mb_k3_e3"] * 21
    ops[2] = "mb_k3_e1"
    with pytest.raises(ArchError, match="layer 2 .*not allowed here; choose one of mb_k3_e3"):
        Arch.from_strings(PROXYLESS_CIFAR, ops)


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "not valid JSON"),
        ('{"ops": []}', "expected an object with 'space' and 'ops'"),
        ('[1, 2]', "expected an object with 'space' and 'ops'"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    (tmp_path / "arch.json").write_text(text)
    with pytest.raises(ArchError, match=message):
        load_arch(tmp_path / "arch.json")


def test_wrong_space_in_file(tmp_path):
    data = random_arch(PROXYLESS_CIFAR).to_dict()
    data["space"]["stem_stride"] = 5
    (tmp_path / "arch.json").write_text(json.dumps(data))
    with pytest.raises(ArchError, match="stem_stride"):
        load_arch(tmp_path / "arch.json")
    with pytest.raises(ArchError, match="does not exist"):
        load_arch(tmp_path / "missing.json")


def test_zero_layers_become_identity_shortcuts():
    ops = [MBConv(3, 3)] * 21
    ops[1] = Zero()
    net = build_net(Arch(PROXYLESS_CIFAR, tuple(ops)))
    assert isinstance(net.blocks[1], torch.nn.Identity)
    full = build_net(Arch(PROXYLESS_CIFAR, (MBConv(3, 3),) * 21))
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize("seed", range(3))
def test_random_archs_build_and_run(seed):
    arch = random_arch(PROXYLESS_CIFAR, seed)
    net = build_net(arch)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def _proxyless_imports(module):
    """Names of proxyless modules that `module` imports, read from its source."""
    import ast
    import importlib

    tree = ast.parse(open(importlib.import_module(module).__file__).read())
    return {node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module.startswith("proxyless")}


def test_standalone_builder_imports_only_the_arch_contract():
    seen, todo = set(), ["proxyless.net"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_proxyless_imports(module))
    allowed = {"proxyless.net", "proxyless.arch", "proxyless.space", "proxyless.ops", "proxyless.layers",
               "proxyless.infra.atomic", "proxyless.errors",
               # build_net also builds tree-cell nets: their arch, edge ops and modules (their imports are
               # followed too, so they may not reach the search code either)
               "proxyless.tree.arch", "proxyless.tree.ops", "proxyless.tree.net"}
    assert seen <= allowed, seen - allowed
