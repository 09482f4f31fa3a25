"""TensorBoardLog: metrics rows in, the same numbers out of TensorBoard's own event reader."""

import sys

import pytest

from proxyless.infra.tensorboard import TensorBoardLog, TensorBoardUnavailable, scalars


def read_scalars(run_dir):
    """tag -> [(step, value)] as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_numbers_of_each_row_become_scalars_at_its_epoch(tmp_path):
    rows = [{"epoch": 1, "train_loss": 2.25, "train_top1": 0.125, "argmax": "mb_k3_e3 zero", "arch_steps": 0},
            {"epoch": 2, "train_loss": 2.0, "train_top1": 0.25, "argmax": "zero zero", "arch_steps": 10,
             "on_target": True, "missing": None, "probs": [0.5, 0.5]}]
    with TensorBoardLog(tmp_path) as board:
        for row in rows:
            board.append(row)
    assert read_scalars(tmp_path) == {
        "train_loss": [(1, 2.25), (2, 2.0)], "train_top1": [(1, 0.125), (2, 0.25)], "arch_steps": [(1, 0.0), (2, 10.0)]}


def test_a_resumed_run_replaces_the_epochs_after_its_checkpoint(tmp_path):
    with TensorBoardLog(tmp_path) as board:  # killed after logging epoch 3, checkpoint at epoch 2
        for epoch, loss in ((1, 2.5), (2, 2.0), (3, 9.0)):
            board.append({"epoch": epoch, "train_loss": loss})
    with TensorBoardLog(tmp_path, completed_epochs=2) as board:
        for epoch, loss in ((3, 1.5), (4, 1.25)):
            board.append({"epoch": epoch, "train_loss": loss})
    assert read_scalars(tmp_path)["train_loss"] == [(1, 2.5), (2, 2.0), (3, 1.5), (4, 1.25)]


def test_scalars_keep_numbers_only():
    assert scalars({"epoch": 3, "a": 1, "b": 0.5, "c": "x", "d": True, "e": None, "f": [1.0]}) == {"a": 1.0, "b": 0.5}


def test_a_row_without_epoch_is_refused(tmp_path):
    with TensorBoardLog(tmp_path) as board, pytest.raises(ValueError, match="'epoch'"):
        board.append({"train_loss": 1.0})


def test_missing_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(TensorBoardUnavailable, match=r'pip install "proxyless\[tensorboard\]"'):
        TensorBoardLog(tmp_path)
    assert not list(tmp_path.iterdir())


def test_train_and_search_write_event_files_with_tensorboard(tmp_path):
    import json

    from helpers import tiny32_space
    from proxyless.arch import Arch, save_arch
    from proxyless.cli import main

    SPACE = tiny32_space()
    save_arch(Arch(SPACE, (SPACE.layers()[0].candidates[0],) * SPACE.num_layers, "tiny"), tmp_path / "arch.json")
    assert main(["train", "--arch", str(tmp_path / "arch.json"), "--epochs", "2", "--batch-size", "64",
                 "--no-progress", "--tensorboard", "--out", str(tmp_path / "train")]) == 0
    board = read_scalars(tmp_path / "train")
    assert [step for step, _ in board["test_top1"]] == [1, 2] and "train_loss" in board
    (tmp_path / "space.json").write_text(json.dumps(SPACE.to_dict()))
    assert main(["search", "--space", str(tmp_path / "space.json"), "--epochs", "2", "--warmup-epochs", "1",
                 "--batch-size", "32", "--limit-images", "128", "--valid-size", "0.2", "--no-progress",
                 "--tensorboard", "--out", str(tmp_path / "search")]) == 0
    board = read_scalars(tmp_path / "search")
    assert [step for step, _ in board["mean_entropy"]] == [1, 2] and "valid_top1_argmax" in board
