import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxyless.arch import save_arch
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
    code, out, _ = run_cli(capsys, "zoo", "build", "mobilenetv2_0.5", "--input-size", "32", "--num-classes", "10",
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


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, text the one-line error must contain)."""
    (tmp / "bad.json").write_text("{oops")
    (tmp / "bad_space.yaml").write_text("name: [unclosed\n")
    arch224 = tmp / "arch224.json"
    save_arch(get_zoo_arch("mobilenetv2_0.35"), arch224)
    data = json.loads(arch224.read_text())
    data["ops"][3] = "mb_k9_e6"
    (tmp / "unknown_op.json").write_text(json.dumps(data))
    (tmp / "empty").mkdir()
    (tmp / "texts" / "cat").mkdir(parents=True)
    (tmp / "texts" / "cat" / "a.txt").write_text("not an image")
    (tmp / "existing").mkdir()
    (tmp / "existing" / "keep.txt").write_text("precious")
    return {
        "missing arch file": (["train", "--arch", str(tmp / "nope.json")], "does not exist"),
        "malformed arch json": (["train", "--arch", str(tmp / "bad.json")], "not valid JSON"),
        "unknown op": (["train", "--arch", str(tmp / "unknown_op.json")], "layer 3: unknown op 'mb_k9_e6'"),
        "malformed space yaml": (["space", "show", str(tmp / "bad_space.yaml")], "not valid YAML"),
        "unknown preset": (["space", "show", "proxyless-mars"], "unknown search space 'proxyless-mars'"),
        "unknown zoo model": (["train", "--zoo", "resnet50"], "unknown zoo model 'resnet50'"),
        "missing data dir": (["train", "--zoo", "mobilenetv2_0.35", "--data", str(tmp / "nowhere")], "nowhere"),
        "empty data dir": (["train", "--zoo", "mobilenetv2_0.35", "--data", str(tmp / "empty")], "empty"),
        "non-image data dir": (["train", "--zoo", "mobilenetv2_0.35", "--data", str(tmp / "texts")], "no class folders with images"),
        "wrong image size": (["train", "--arch", str(arch224), "--data", "sample"], "fixed 32×32 images"),
        "existing out dir": (["train", "--zoo", "mobilenetv2_0.35", "--out", str(tmp / "existing")], "--resume"),
        "no gpu": (["train", "--zoo", "mobilenetv2_0.35", "--device", "cuda", "--out", str(tmp / "gpu")], "no CUDA"),
        "bad flag value": (["train", "--epochs", "many"], "invalid int value"),
    }


BAD_INPUT_CASES = [
    "missing arch file", "malformed arch json", "unknown op", "malformed space yaml", "unknown preset",
    "unknown zoo model", "missing data dir", "empty data dir", "non-image data dir", "wrong image size",
    "existing out dir", "no gpu", "bad flag value",
]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    assert sorted(cases) == sorted(BAD_INPUT_CASES)
    argv, expected = cases[case]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse usage errors
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "error:" in lines[0] and expected.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err
    assert (tmp_path / "existing" / "keep.txt").read_text() == "precious"
    assert not (tmp_path / "gpu").exists()  # nothing created for a run that could not start


def test_train_then_eval_end_to_end_on_the_embedded_sample(tmp_path):
    """The README's main command, as a user runs it: a progress bar, a checkpoint, a metrics log."""
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "proxyless", "train", "--zoo", "mobilenetv2_0.35", "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "img/s" in done.stderr  # the progress bar, with throughput
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.csv").is_file()
    evaluated = subprocess.run([sys.executable, "-m", "proxyless", "eval", str(out), "--json"],
                               capture_output=True, text=True, check=True)
    result = json.loads(evaluated.stdout)
    train_result = json.loads((out / "result.json").read_text())
    assert result["top1"] == pytest.approx(train_result["test_top1"])
    assert result["macs"] == train_result["macs"] > 0
