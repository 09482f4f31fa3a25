"""Data-parallel runs under torchrun: one process per device, on PyTorch's own engine.

`torchrun --nproc-per-node N -m proxyless search|train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
`Dist.from_env(device)` then starts the process group (nccl on CUDA, gloo on CPU) and gives each
process its GPU. A lone process gets `Dist()` (rank 0 of 1), whose collectives return their input, so
the loops call them unconditionally: there is no distributed mode to switch on.

N processes with a batch of B each behave like one process with a batch of N·B:
    data       `DistributedSampler` splits every global batch of one seeded permutation across ranks
    weights    DistributedDataParallel averages their gradients
    α          `average_gradients` after the architecture backward; REINFORCE averages the accuracy
    metrics    counts and sums are added over ranks (`sum`)
    paths      every rank draws the same paths from a generator seeded by (seed, step), and
               `check_same` compares them across ranks at every step (it counts the checks)
Only rank 0 writes files, logs and draws progress bars. BatchNorm uses each rank's own batch (there is
no CPU SyncBatchNorm), the one way N processes differ from one with the N-fold batch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from proxyless.errors import UserError


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started (WORLD_SIZE above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def end_process(code: int) -> NoReturn:
    """End this process at once with exit code `code`, its output flushed, without the interpreter's
    teardown: nothing of gloo's (threads, connections, destructors) runs after the work is done, the
    kernel closes its sockets. For a torchrun worker whose results are written (see `Dist.close`)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class RanksDisagree(RuntimeError):
    """Ranks were about to compute with different paths (or other values that must be shared)."""


class Dist:
    """This process's place in a data-parallel run (rank 0 of 1 when alone)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, device: torch.device | None = None) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device or torch.device("cpu")  # where collective tensors live (nccl: the GPU)
        self.checks = 0  # `check_same` calls that found every rank in agreement

    @classmethod
    def from_env(cls, device: torch.device) -> Dist:
        """The run torchrun started (its environment variables), or a lone process."""
        if not launched_by_torchrun():
            return cls(device=device)
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise UserError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                                "use --nproc-per-node at most the number of GPUs")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world, local_rank, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # -- collectives (each returns its input, or does nothing, when alone) ----------------------------

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value added over ranks."""
        if not self.active:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def mean(self, value: float) -> float:
        return self.sum([value])[0] / self.world

    def average_gradients(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Each tensor's mean over ranks, in one all-reduce (None stays None: the same on every rank)."""
        if not self.active or all(g is None for g in grads):
            return list(grads)
        with_grad = [g for g in grads if g is not None]
        flat = torch.cat([g.reshape(-1) for g in with_grad])
        torch_dist.all_reduce(flat)
        flat /= self.world
        averaged, offset = [], 0
        for g in grads:
            if g is None:
                averaged.append(None)
                continue
            averaged.append(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return averaged

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank. Each process updates its own
        from its share of the batch; evaluating with rank 0's is evaluating what rank 0 saves."""
        if self.active:
            for buffer in module.buffers():
                torch_dist.broadcast(buffer, src=0)

    def check_same(self, values: Sequence[int], what: str) -> None:
        """Raise `RanksDisagree` unless every rank passed the same integers (e.g. the paths of a step)."""
        if self.active:
            mine = torch.tensor(list(values), dtype=torch.int64, device=self.device)
            everyone = [torch.empty_like(mine) for _ in range(self.world)]
            torch_dist.all_gather(everyone, mine)
            if any(not torch.equal(other, mine) for other in everyone):
                raise RanksDisagree(f"rank {self.rank}: {what} differ across ranks: "
                                    + "; ".join(str(t.tolist()) for t in everyone))
        self.checks += 1

    def on_main(self, work: Callable[[], Any]) -> Any:
        """`work()` run by rank 0 only (e.g. creating the run directory), its result on every rank; a
        UserError there is raised on every rank, so none is left waiting."""
        result, error = None, None
        if self.main:
            try:
                result = work()
            except UserError as err:
                error = str(err)
        result, error = self.broadcast((result, error))
        if error is not None:
            raise UserError(error)
        return result

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (any picklable object: only plain data is sent)."""
        if not self.active:
            return value
        box = [value]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on any rank (e.g. a stop signal that reached only some processes)."""
        return bool(self.sum([int(flag)])[0]) if self.active else flag

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order."""
        if not self.active:
            return [value]
        boxes: list[Any] = [None] * self.world
        torch_dist.all_gather_object(boxes, value)
        return boxes

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def close(self, destroy: bool = True) -> None:
        """Tear the process group down. On the normal path every rank first waits for the others: a rank
        that tears down and exits while another still holds its connections (rank 0 writing the results)
        was aborted by gloo ("terminate called without an active exception", about one run in five here).
        Called while an exception propagates, it does not wait: the other ranks may never come.

        `destroy=False` leaves the group to the end of the process, for a process that ends right after
        with `end_process` (the command line's workers): even after the wait, gloo's teardown still
        aborted a worker now and then (one CI run in several dozen), once all its work was done."""
        if self.active and torch_dist.is_initialized():
            if sys.exc_info()[0] is None:
                torch_dist.barrier()
            if destroy:
                torch_dist.destroy_process_group()

    # -- data and models --------------------------------------------------------------------------------

    def epoch_loader(self, dataset: Dataset, batch_size: int, seed: int, epoch: int, skip: int = 0,
                     workers: int = 0) -> DataLoader:
        """This rank's batches of epoch `epoch` (see `shard_indices`), after the first `skip` of them."""
        batches = self.shard_indices(dataset, batch_size, seed, epoch)[skip:]
        # its own generator: otherwise each new iterator draws a base seed from the global RNG, and a
        # resumed epoch (a new iterator mid-epoch) would see different augmentations in its workers
        return DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                          generator=keyed_generator(seed, epoch, 2, self.rank))

    def shard_indices(self, dataset: Dataset, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        """This rank's batches of an epoch: the global batches (N·B) of a permutation seeded by
        (seed, epoch), each split across the ranks; the last incomplete global batch is dropped."""
        sampler = DistributedSampler(dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        mine = list(sampler)
        return [mine[i * batch_size:(i + 1) * batch_size] for i in range(len(mine) // batch_size)]

    def eval_indices(self, size: int) -> list[int]:
        """This rank's share of an evaluation set of `size` items (every item exactly once overall)."""
        return list(range(self.rank, size, self.world))

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """DistributedDataParallel around `model` (the model itself when alone)."""
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def keyed_generator(*key: int) -> torch.Generator:
    """A generator seeded by a tuple of ints (seed, step, ...): the same on every rank for the same key."""
    seed = 0
    for part in key:
        seed = (seed * 1_000_003 + part) % (2**63)
    return torch.Generator().manual_seed(seed)


def rng_states(dist: Dist) -> list[torch.Tensor]:
    """Every rank's global torch RNG state (each draws its own augmentations), for a checkpoint."""
    return dist.gather(torch.get_rng_state())


def restore_rng(dist: Dist, states: list[torch.Tensor] | torch.Tensor, where: str) -> None:
    """Set this rank's RNG state from a checkpoint taken with the same number of processes."""
    states = [states] if isinstance(states, torch.Tensor) else list(states)
    if len(states) != dist.world:
        raise UserError(f"{where} was saved by {len(states)} process(es), this run has {dist.world}; "
                        f"resume with --nproc-per-node {len(states)}")
    torch.set_rng_state(states[dist.rank])
