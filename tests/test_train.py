import signal

import pytest
import torch
from torch.utils.data import Subset

from proxyless.data import Splits, load_splits
from proxyless.errors import NonFiniteLossError
from proxyless.infra.checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from proxyless.infra.signals import Interrupted
from proxyless.net import build_net
from proxyless.optim import WarmupCosine, param_groups
from proxyless.train import TrainConfig, Trainer
from proxyless.zoo import get_zoo_arch

ARCH = get_zoo_arch("mobilenetv2_0.35").with_task(32, 10)


@pytest.fixture(scope="module")
def tiny_splits():
    full = load_splits("sample", 32, progress=False)
    train, test = range(0, 5000, 26), range(0, 1000, 15)  # every class, as the sample is sorted by class
    return Splits(Subset(full.train, train), None, Subset(full.test, test), full.classes, 32, "tiny sample")


def seeded_net(seed=0):
    torch.manual_seed(seed)
    return build_net(ARCH)


def config(**overrides):
    return TrainConfig(**{"epochs": 2, "batch_size": 64, "progress": False, **overrides})


def test_warmup_cosine_schedule():
    schedule = WarmupCosine(total_steps=100, warmup_steps=10)
    assert schedule(0) == pytest.approx(0.1) and schedule(9) == pytest.approx(1.0)
    assert schedule(10) == pytest.approx(1.0) and schedule(55) == pytest.approx(0.5)
    assert schedule(100) == pytest.approx(0.0) and schedule(150) == pytest.approx(0.0)
    values = [schedule(s) for s in range(10, 101)]
    assert values == sorted(values, reverse=True)


def test_no_weight_decay_on_batch_norm_and_biases():
    net = build_net(ARCH)
    decay, no_decay = param_groups(net, 4e-5)
    bn_and_bias = {id(m.weight) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    bn_and_bias |= {id(m.bias) for m in net.modules() if getattr(m, "bias", None) is not None}
    assert {id(p) for p in no_decay["params"]} == bn_and_bias and no_decay["weight_decay"] == 0
    assert all(p.ndim == 4 or p.ndim == 2 for p in decay["params"]) and decay["weight_decay"] == 4e-5


def test_train_writes_run_files_and_learns(tmp_path, tiny_splits):
    torch.manual_seed(0)
    result = Trainer(ARCH, seeded_net(), tiny_splits, config(epochs=3, batch_size=32, lr=0.02)).run(tmp_path)
    for name in ("arch.json", "config.json", "metrics.csv", "metrics.jsonl", "checkpoint.pt",
                 "weights.safetensors", "result.json"):
        assert (tmp_path / name).is_file(), name
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,train_loss")
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert losses[-1] < losses[0]  # the loss goes down on the training images
    labels = {int(tiny_splits.train[i][1]) for i in range(len(tiny_splits.train))}
    assert len(labels) == 10
    assert 0 <= result["test_top1"] <= result["test_top5"] <= 1 and result["macs"] > 0
    net = build_net(ARCH)
    load_weights(net, tmp_path / "weights.safetensors")
    state = load_checkpoint(tmp_path / "checkpoint.pt", ARCH)
    assert state["epoch"] == 3
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, state["model"][name].to(tensor.dtype)), name


def test_resume_continues_to_the_same_weights(tmp_path, tiny_splits, monkeypatch):
    Trainer(ARCH, seeded_net(), tiny_splits, config()).run(tmp_path / "straight")

    original = Trainer.run_epoch  # the engine's epoch loop

    def stop_in_second_epoch(self, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, *args)

    monkeypatch.setattr(Trainer, "run_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(ARCH, seeded_net(), tiny_splits, config()).run(tmp_path / "resumed")
    monkeypatch.setattr(Trainer, "run_epoch", original)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    Trainer(ARCH, seeded_net(seed=1), tiny_splits, config()).run(tmp_path / "resumed", resume=True)

    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6, msg=name)
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 2


def test_ctrl_c_mid_epoch_checkpoints_that_step_and_resumes_exactly(tmp_path, tiny_splits, monkeypatch):
    """A real SIGINT during a step: the step finishes, a checkpoint of it is written, Interrupted is
    raised, and the resumed run ends with the uninterrupted run's weights."""
    Trainer(ARCH, seeded_net(), tiny_splits, config()).run(tmp_path / "straight")
    original = Trainer.step

    def ctrl_c_at_epoch_2_step_1(self, images, targets, epoch, step, totals):
        if (epoch, step) == (1, 1):
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        return original(self, images, targets, epoch, step, totals)

    monkeypatch.setattr(Trainer, "step", ctrl_c_at_epoch_2_step_1)
    previous_handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted, match=r"checkpoint.pt at epoch 2, step 2") as stopped:
        Trainer(ARCH, seeded_net(), tiny_splits, config()).run(tmp_path / "resumed")
    assert stopped.value.exit_code == 130 and signal.getsignal(signal.SIGINT) is previous_handler
    monkeypatch.setattr(Trainer, "step", original)
    state = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert (state["epoch"], state["step"], state["totals"][0]["seen"]) == (1, 2, 2 * 64)
    Trainer(ARCH, seeded_net(seed=1), tiny_splits, config()).run(tmp_path / "resumed", resume=True)

    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6, msg=name)
    rows = [(tmp_path / run / "metrics.csv").read_text().splitlines() for run in ("straight", "resumed")]
    assert [r.split(",")[:3] for r in rows[0]] == [r.split(",")[:3] for r in rows[1]]  # epoch, loss, top-1


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_splits):
    Trainer(ARCH, seeded_net(), tiny_splits, config(epochs=1)).run(tmp_path)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    trainer = Trainer(ARCH, seeded_net(), tiny_splits, config(epochs=2))
    original = trainer.criterion
    trainer.criterion = lambda logits, targets: original(logits, targets) * float("nan")
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 2, step 0; lower --lr"):
        trainer.run(tmp_path, resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved  # the last good checkpoint, untouched
    assert all(torch.isfinite(p).all() for p in trainer.net.parameters())  # no step was taken on it


def test_checkpoint_errors(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"arch": ARCH.to_dict(), "model": build_net(ARCH).state_dict()}, path)
    other = get_zoo_arch("mobilenetv2_0.5").with_task(32, 10)
    with pytest.raises(CheckpointError, match="different architecture"):
        load_checkpoint(path, other)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "proxyless-checkpoint/1", "x": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_config_validation_names_the_flag():
    with pytest.raises(ValueError, match="--batch-size must be a positive integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="--lr must be positive"):
        TrainConfig(lr=-1.0)
