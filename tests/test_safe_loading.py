"""Files from users load without running code: every loader in the package is a safe one (checked in
the source), and tampered files given to each command that reads one are refused without side effects."""

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

import proxyless
from proxyless.arch import save_arch
from proxyless.cli import main
from proxyless.space import get_space
from proxyless.zoo import get_zoo_arch

PACKAGE = Path(proxyless.__file__).parent


def calls(tree: ast.AST):
    """(dotted name, call node) of every call whose function is a name or an attribute chain."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                yield ".".join([func.id, *reversed(parts)]), node


def keyword(node: ast.Call, name: str) -> object:
    return next((ast.literal_eval(k.value) for k in node.keywords if k.arg == name), None)


def test_every_loader_in_the_package_is_a_safe_one():
    unsafe = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, node in calls(ast.parse(path.read_text())):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}"
            if name == "torch.load" and keyword(node, "weights_only") is not True:
                unsafe.append(where + " without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "yaml.full_load",
                          "eval", "exec", "marshal.loads", "dill.load"):
                unsafe.append(where)
            elif name == "np.load" and keyword(node, "allow_pickle") is True:
                unsafe.append(where + " with allow_pickle=True")
    assert unsafe == []


class Exploit:
    """Unpickling this creates `marker`: what a tampered checkpoint could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture
def tampered(tmp_path: Path) -> Path:
    """A train run, a search run and loose files, each carrying a payload that would create `pwned`."""
    marker = tmp_path / "pwned"
    arch = get_zoo_arch("mobilenetv2_0.35").with_task(32, 10)
    evil_state = {"format": "proxyless-checkpoint/1", "arch": arch.to_dict(), "model": Exploit(marker)}
    for run in ("train_run", "search_run"):
        (tmp_path / run).mkdir()
        save_arch(arch, tmp_path / run / "arch.json")
        torch.save(evil_state, tmp_path / run / "checkpoint.pt")
    # the settings a resume or derive reads before the checkpoint
    (tmp_path / "search_run" / "config.json").write_text(json.dumps({"space": get_space("proxyless-cifar").to_dict()}))
    (tmp_path / "train_run" / "config.json").write_text(json.dumps({"command": {"data": "sample", "epochs": 1}}))
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps(Exploit(marker)))
    (tmp_path / "evil.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    return tmp_path


CASES = {
    "eval a run": ("eval {t}/train_run", "refused to load"),
    "export a checkpoint": ("export --arch {t}/train_run/arch.json --weights {t}/train_run/checkpoint.pt "
                            "--format onnx --out {t}/net.onnx", "refused to load"),
    "resume a training": ("train --resume {t}/train_run", "refused to load"),
    "derive a search": ("derive {t}/search_run", "refused to load"),
    "a pickle as arch.json": ("train --arch {t}/evil.pickle", "evil.pickle"),
    "a pickle as latency table": ("lut show --lut {t}/evil.pickle", "evil.pickle"),
    "a pickle as weights": ("eval --arch {t}/train_run/arch.json --weights {t}/evil.pickle", "evil.pickle"),
    "a YAML space with a python tag": ("space show {t}/evil.yaml", "not valid YAML"),
    "a YAML latency table with a python tag": ("lut show --lut {t}/evil.yaml", "evil.yaml"),
}


@pytest.mark.parametrize("case", CASES)
def test_tampered_files_are_refused_without_running_code(case, tampered, capsys):
    template, expected = CASES[case]
    code = main(template.format(t=tampered).split())
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tampered / "pwned").exists()
