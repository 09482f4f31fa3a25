"""The resumable-run engine and the resume contract, on a toy run (a linear model on random tensors) that
takes milliseconds, and the contract end to end through `train_net` and `proxyless search`."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

import proxyless as px
from helpers import tiny32_space
from proxyless.cli import main
from proxyless.errors import UserError
from proxyless.infra.checkpoint import load_checkpoint
from proxyless.infra.distributed import Dist
from proxyless.infra.engine import ResumableRun, Totals
from proxyless.infra.settings import resume_changes
from proxyless.optim import load_schedule, make_scheduler, make_sgd


@dataclass(frozen=True)
class ToyConfig:
    epochs: int = 3
    batch_size: int = 8
    seed: int = 0
    checkpoint_every: int = 0
    num_workers: int = 0
    progress: bool = False
    tensorboard: bool = False


class ToyRun(ResumableRun):
    kind = "toy"
    histories = ("toy_history",)

    def __init__(self, config: ToyConfig, kind: str = "toy") -> None:
        generator = torch.Generator().manual_seed(0)
        self.train_set = TensorDataset(torch.randn(64, 4, generator=generator),
                                       torch.randint(0, 2, (64,), generator=generator))
        self.config, self.dist, self.kind = config, Dist(), kind
        self.steps_per_epoch = len(self.train_set) // config.batch_size
        torch.manual_seed(1)
        self.model = nn.Linear(4, 2)
        self.optimizer = make_sgd(self.model, 0.1)
        self.scheduler = make_scheduler(self.optimizer, self.steps_per_epoch * config.epochs, 0)
        self.steps: list[tuple[int, int]] = []

    def step(self, images, targets, epoch, step, totals: Totals) -> None:
        self.steps.append((epoch, step))
        loss = nn.functional.cross_entropy(self.model(images), targets)
        self.check_finite(loss, "toy loss")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        totals.add(loss.item(), 0, len(targets))

    def end_of_epoch(self, epoch, totals):
        sums = self.epoch_sums(totals)
        return {"metrics": {"epoch": epoch + 1, "train_loss": sums.loss, "seen": sums.seen},
                "toy_history": {"epoch": epoch + 1, "weight": self.model.weight.sum().item()}}

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state, where):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        load_schedule(self.scheduler, state["scheduler"])


def test_engine_runs_checkpoints_and_logs(tmp_path):
    run = ToyRun(ToyConfig(checkpoint_every=3))
    assert run.run(tmp_path) == 3
    assert run.steps == [(e, s) for e in range(3) for s in range(8)]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (state["kind"], state["epoch"], state["step"]) == ("toy", 3, 0)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(r["seen"] == 64 for r in rows)
    assert len((tmp_path / "toy_history.jsonl").read_text().splitlines()) == 3


def test_engine_resumes_mid_epoch_to_the_uninterrupted_result(tmp_path, monkeypatch):
    straight = ToyRun(ToyConfig())
    straight.run(tmp_path / "straight")
    original = ToyRun.step

    def stop_at_epoch_2_step_5(self, images, targets, epoch, step, totals):
        if (epoch, step) == (1, 5):
            raise KeyboardInterrupt  # a kill after the checkpoint of step 4
        return original(self, images, targets, epoch, step, totals)

    monkeypatch.setattr(ToyRun, "step", stop_at_epoch_2_step_5)
    with pytest.raises(KeyboardInterrupt):
        ToyRun(ToyConfig(checkpoint_every=2)).run(tmp_path / "killed")
    monkeypatch.setattr(ToyRun, "step", original)
    state = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert (state["epoch"], state["step"], state["totals"][0]["seen"]) == (1, 4, 32)
    resumed = ToyRun(ToyConfig(checkpoint_every=2))
    resumed.run(tmp_path / "killed", resume=True)
    assert resumed.steps[0] == (1, 4)  # continued at the saved step, not from the start of the epoch
    assert torch.equal(resumed.model.weight, straight.model.weight)
    assert (tmp_path / "killed" / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()


def test_engine_refuses_a_checkpoint_of_another_kind(tmp_path):
    ToyRun(ToyConfig(epochs=1)).run(tmp_path)
    with pytest.raises(UserError, match="a toy run's checkpoint, not a search run's"):
        ToyRun(ToyConfig(epochs=2), kind="search").run(tmp_path, resume=True)


def test_engine_stops_every_step_on_a_non_finite_loss(tmp_path):
    run = ToyRun(ToyConfig(epochs=1))
    run.train_set = TensorDataset(torch.full((64, 4), float("nan")), torch.zeros(64, dtype=torch.long))
    with pytest.raises(px.UserError, match="toy loss became nan; lower --lr"):
        run.run(tmp_path)


def test_resume_changes_lists_every_refused_setting_and_allows_more_epochs():
    saved = {"search": {"epochs": 4, "batch_size": 32, "lr": 0.1, "progress": True}, "data": "sample"}
    with pytest.raises(UserError, match=r"these differ: --batch-size 64 \(saved: 32\), --lr 0.2 \(saved: 0.1\); drop"):
        resume_changes(saved, {"search": {"epochs": 4, "batch_size": 64, "lr": 0.2}}, "run")
    with pytest.raises(UserError, match=r"--data 'other' \(saved: 'sample'\)"):
        resume_changes(saved, {"data": "other"}, "run")
    with pytest.raises(UserError, match="--epochs 2 is fewer than the run's 4"):
        resume_changes(saved, {"search": {"epochs": 2}}, "run")
    assert resume_changes(saved, {"search": {"epochs": 6, "progress": False}, "new_setting": 1}, "run") == {
        "search.epochs": [4, 6], "search.progress": [True, False]}
    # a machine's settings may change between sessions: loader workers, torch threads
    assert resume_changes({"workers": 0, "threads": 2}, {"workers": 2, "threads": 1}, "run") == {
        "workers": [0, 2], "threads": [2, 1]}


def test_a_refused_setting_is_named_by_its_flag_with_the_value_that_flag_takes():
    """The Python API saves settings by field name; the refusal speaks in the CLI's flags and their values,
    so a search resumed with the other residual init is told `--residual-init`, not a flag that does not exist."""
    saved = {"search": {"residual_init": 0.0, "channels_last": True, "num_workers": 2}}
    given = {"search": {"residual_init": 1.0, "channels_last": False, "num_workers": 4}}
    with pytest.raises(UserError, match=r"these differ: --channels-first on \(saved: off\), "
                                        r"--residual-init unit \(saved: zero\); drop") as refused:
        resume_changes(saved, given, "run")
    assert "zero-init" not in str(refused.value) and "workers" not in str(refused.value)  # workers may change


def test_a_flag_that_became_a_list_resumes_with_its_one_value():
    saved = {"lut": "a.json"}  # saved before --lut took a table per target
    assert resume_changes(saved, {"lut": ["a.json"]}, "run") == {}
    with pytest.raises(UserError, match="--lut"):
        resume_changes(saved, {"lut": ["b.json"]}, "run")


def test_train_resumed_with_more_epochs_trains_them_and_records_it(tmp_path, sample_splits):
    arch = px.Arch.from_strings(tiny32_space(), ["mb_k3_e3"] * tiny32_space().num_layers, "tiny")
    data = px.Splits(Subset(sample_splits.train, range(0, 5000, 40)), None,
                     Subset(sample_splits.test, range(0, 1000, 20)),
                     sample_splits.classes, 32, "a subset of the sample")
    config = px.TrainConfig(epochs=1, batch_size=25, progress=False)
    first = px.train_net(arch, data, config, out=tmp_path / "run")
    weights_after_one = load_checkpoint(first.run_dir / "checkpoint.pt")["model"]
    with pytest.raises(UserError, match=r"--batch-size 50 \(saved: 25\)"):
        px.train_net(arch, data, px.TrainConfig(epochs=1, batch_size=50, progress=False), out=tmp_path / "run",
                     resume=True)
    px.train_net(arch, data, px.TrainConfig(epochs=2, batch_size=25, progress=False), out=tmp_path / "run", resume=True)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2
    settings = json.loads((tmp_path / "run" / "config.json").read_text())
    assert settings["train"]["epochs"] == 2 and settings["resumed"][0]["changed"] == {"train.epochs": [1, 2]}
    # the cosine was stretched to two epochs: the second one moved the weights (it would sit at lr 0 otherwise)
    after_two = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert any(not torch.equal(after_two[k], weights_after_one[k]) for k in after_two if k.endswith("weight"))


def test_search_runs_one_epoch_and_its_resume_keeps_the_saved_settings(tmp_path, monkeypatch, capsys):
    """`proxyless search --epochs 1` runs (the default warmup adapts); `--resume` with another --batch-size is
    refused naming the flag, and with more epochs continues."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.json").write_text(json.dumps(tiny32_space().to_dict()))
    argv = ["search", "--space", "tiny.json", "--epochs", "1", "--limit-images", "128", "--batch-size", "16",
            "--arch-every", "1", "--no-progress", "--out", "run"]
    assert main(argv) == 0
    settings = json.loads(Path("run/config.json").read_text())
    assert settings["search"]["warmup_epochs"] == 0 and settings["command"]["warmup_epochs"] == 0
    rows = [json.loads(line) for line in Path("run/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["arch_steps"] > 0  # one epoch, and α was trained in it
    assert 0 < rows[0]["epoch_seconds"] < 300  # what the epoch's steps took, as in a training's rows
    capsys.readouterr()
    assert main(["search", "--resume", "run", "--batch-size", "32"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--batch-size 32 (saved: 16)" in error
    assert main(["search", "--resume", "run", "--epochs", "2", "--no-progress"]) == 0
    assert len(Path("run/metrics.jsonl").read_text().splitlines()) == 2
