"""The tree reads as the README says: every module in its Layout section, public names exported per
subpackage, argparse only in the CLI, and benchmarks on the library rather than the CLI."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "proxyless"


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Layout", 1)[1].split("```", 2)[1]


@pytest.mark.parametrize("folder", [PACKAGE, PACKAGE / "infra"], ids=["proxyless", "infra"])
def test_readme_layout_names_every_module(folder):
    named = set(re.findall(r"^\s+([\w.]+/?)\s", layout_block(), flags=re.M))
    modules = {p.name for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    packages = {f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").is_file()}
    assert modules | packages <= named, sorted((modules | packages) - named)


@pytest.mark.parametrize("name", ["proxyless", "proxyless.infra", "proxyless.search", "proxyless.data",
                                  "proxyless.latency"])
def test_subpackages_export_their_public_names(name):
    module = importlib.import_module(name)
    assert module.__all__ and all(hasattr(module, export) for export in module.__all__)


def test_argparse_only_in_the_cli_and_benchmarks_call_the_library():
    for path in PACKAGE.rglob("*.py"):
        if "cli" not in path.relative_to(PACKAGE).parts:
            assert "Namespace" not in path.read_text() and "argparse" not in path.read_text(), path
    for path in (ROOT / "benchmarks").glob("*.py"):
        assert "proxyless.cli" not in path.read_text(), path
