import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxyless.cli import main
from proxyless.zoo import get_zoo_arch

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
COMMANDS = ("search", "derive", "report", "plot", "zoo", "space", "train", "eval", "export", "lut", "latency")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_python_m_help_lists_every_subcommand():
    done = subprocess.run([sys.executable, "-m", "proxyless", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_zoo_show_prints_params_and_macs(capsys):
    code, out, _ = run_cli(capsys, "zoo", "show", "proxyless_mobile")
    assert code == 0
    assert "params 4.08M  MACs 320.4M" in out
    assert out.count("mb_k") + out.count("zero") == 21


def test_zoo_list_and_build(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "zoo", "list")
    assert code == 0 and "proxyless_gpu" in out and "mobilenetv2_1.4" in out
    code, out, _ = run_cli(capsys, "zoo", "build", "mobilenetv2_0.5", "--image-size", "32", "--num-classes", "10",
                           "--out", str(tmp_path / "a.json"))
    assert code == 0 and json.loads((tmp_path / "a.json").read_text())["space"]["input_size"] == 32


def test_zoo_import_reference_config(tmp_path, capsys):
    config = REFERENCE / "proxyless_cpu.config.json"
    if not config.exists():
        pytest.skip(f"reference configs not found at {REFERENCE}")
    code, _, _ = run_cli(capsys, "zoo", "import", str(config), "--out", str(tmp_path / "cpu.json"))
    assert code == 0
    imported = json.loads((tmp_path / "cpu.json").read_text())
    assert imported["ops"] == get_zoo_arch("proxyless_cpu").op_strings()


def test_train_then_eval_end_to_end_on_the_embedded_sample(tmp_path):
    """Training as a user runs it: a progress bar, a checkpoint, a metrics log; then eval of the run. On 500
    of the sample's 5,000 training images (the whole sample took 150-180 s of the suite's time)."""
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "proxyless", "train", "--zoo", "mobilenetv2_0.35", "--epochs", "1", "--limit-images",
         "500", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "img/s" in done.stderr  # the progress bar, with throughput
    assert "(1 process(es) of 1 thread(s))" in done.stderr  # --threads 1 on a machine of two cores or more
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.csv").is_file()
    config = json.loads((out / "config.json").read_text())
    assert "500 training images used" in config["data"] and config["command"]["limit_images"] == 500
    evaluated = subprocess.run([sys.executable, "-m", "proxyless", "eval", str(out), "--json"],
                               capture_output=True, text=True, check=True)
    result = json.loads(evaluated.stdout)
    train_result = json.loads((out / "result.json").read_text())
    assert result["top1"] == pytest.approx(train_result["test_top1"])
    assert result["macs"] == train_result["macs"] > 0
