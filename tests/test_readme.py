import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = 'pip install -c constraints.txt -e ".[test]" && python -m pytest -q -n 2'
    assert command in readme
    assert command in (ROOT / ".ci" / "run").read_text()


def test_readme_quick_start_uses_the_pinned_install():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c constraints.txt -e . && proxyless search" in readme
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()


def test_readme_python_api_example_runs(tmp_path):
    """The README's Python example, as written: a hardware-aware search, derive, train, evaluate, export."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- api-example -->\n```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs/api-search/arch.json").is_file() and (tmp_path / "runs/api-search/latency.json").is_file()
    latency = json.loads((tmp_path / "runs/api-search/latency.json").read_text())
    assert latency["measured_ms"] > 0 and latency["target_ms"] > 0
    result = json.loads((tmp_path / "runs/api-train/result.json").read_text())
    assert 0 <= result["test_top1"] <= 1
    assert json.loads((tmp_path / "runs/api-train/export.json").read_text())  # the export's record
    assert (tmp_path / "runs/api-train/model.pt2").is_file()
