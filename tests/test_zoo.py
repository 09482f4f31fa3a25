import argparse
import json
from pathlib import Path

import pytest
import torch

from proxyless.arch import Arch
from proxyless.net import build_net
from proxyless.profile import count_macs, count_params, profile
from proxyless.tree.legacy import is_tree_legacy_config, tree_arch_from_legacy
from proxyless.zoo import PUBLISHED, PUBLISHED_TREE, get_zoo_arch, list_zoo, mobilenet_v2
from proxyless.zoo.legacy import arch_from_legacy, legacy_from_net

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
ZOO = [entry.name for entry in list_zoo()]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_entry_forward_backward_every_param_gets_gradient(name):
    arch = get_zoo_arch(name).with_task(32, 10)  # tiny input keeps this fast
    net = build_net(arch)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


def reference_config(name):
    path = REFERENCE / f"{name}.config.json"
    if not path.exists():
        pytest.skip(f"reference configs not found at {REFERENCE} (shared/ is not beside the checkout)")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", PUBLISHED)
def test_built_net_matches_reference_config_field_by_field(name):
    reference = reference_config(name)
    net = build_net(get_zoo_arch(name))
    described = legacy_from_net(net)  # read back from the built modules, not from the arch
    assert len(described["blocks"]) == len(reference["blocks"])
    for i, (ours, theirs) in enumerate(zip(described["blocks"], reference["blocks"])):
        assert ours == theirs, f"block {i}"
    for key in ("first_conv", "feature_mix_layer", "classifier", "bn"):
        assert described[key] == reference[key], key


@pytest.mark.parametrize("name", PUBLISHED + PUBLISHED_TREE)
def test_shipped_zoo_entry_equals_fresh_import(name):
    config = reference_config(name)
    importer = tree_arch_from_legacy if is_tree_legacy_config(config) else arch_from_legacy
    assert get_zoo_arch(name) == importer(config, name)


# Published figures: ProxylessNAS paper / model cards (MACs at 224 px, params with a 1000-class head).
@pytest.mark.parametrize(
    "name,macs_m,params_m",
    [("proxyless_mobile", 320, 4.08), ("proxyless_cpu", 439, 4.36), ("proxyless_gpu", 465, 7.12),
     ("mobilenetv2_1", 300, 3.50), ("mobilenetv2_0.35", 59, 1.68)],
)
def test_params_and_macs_match_published(name, macs_m, params_m):
    net = build_net(get_zoo_arch(name))
    assert count_macs(net, 224) / 1e6 == pytest.approx(macs_m, rel=0.01)
    assert count_params(net) / 1e6 == pytest.approx(params_m, rel=0.01)


def test_macs_counted_by_torch_flop_counter_on_a_single_conv():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert profile(conv, 10).macs == 8 * 3 * 9 * 10 * 10


def test_mobilenet_v2_width_family_is_monotone():
    macs = [count_macs(build_net(mobilenet_v2(w)), 224) for w in (0.35, 0.5, 0.75, 1.0, 1.4)]
    assert macs == sorted(macs)


def test_unknown_zoo_name_lists_known():
    with pytest.raises(ValueError, match="unknown zoo model 'resnet50'; known models: mobilenetv2_0.35"):
        get_zoo_arch("resnet50")
    assert isinstance(get_zoo_arch("mobilenetv2_0.5"), Arch)


def _options(parser, path=()):
    """(command path, option strings) of `parser` and of each of its subcommands, recursively."""
    yield path, {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))


def test_the_image_size_is_image_size_in_every_command():
    """One flag for one idea: no command takes `--input-size`, not even as a hidden alias."""
    from proxyless.cli import build_parser

    options = dict(_options(build_parser()))
    assert not [" ".join(path) for path, flags in options.items() if "--input-size" in flags]
    for command in (("search",), ("train",), ("zoo", "show"), ("zoo", "build"), ("zoo", "import"),
                    ("latency", "measure")):
        assert "--image-size" in options[command], command


def test_zoo_build_and_import_take_the_image_size(tmp_path, capsys):
    from proxyless.cli import main

    assert main(["zoo", "build", "mobilenetv2_0.35", "--image-size", "32", "--num-classes", "10",
                 "--out", str(tmp_path / "built.json")]) == 0
    assert json.loads((tmp_path / "built.json").read_text())["space"]["input_size"] == 32
    (tmp_path / "cpu.config.json").write_text(json.dumps(legacy_from_net(build_net(get_zoo_arch("proxyless_cpu")))))
    assert main(["zoo", "import", str(tmp_path / "cpu.config.json"), "--image-size", "160",
                 "--out", str(tmp_path / "cpu.json")]) == 0
    assert json.loads((tmp_path / "cpu.json").read_text())["space"]["input_size"] == 160
    assert main(["zoo", "build", "mobilenetv2_0.35", "--image-size", "0"]) == 2
    assert "--image-size must be a positive integer, got 0" in capsys.readouterr().err
