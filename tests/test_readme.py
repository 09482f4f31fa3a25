from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = 'pip install -c constraints.txt -e ".[test]" && python -m pytest -q'
    assert command in readme
    assert command in (ROOT / ".ci" / "run").read_text()


def test_readme_quick_start_uses_the_pinned_install():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c constraints.txt -e . && proxyless search" in readme
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
