"""Data-parallel search under torchrun: one global batch, split across ranks, one path per step.

ProxylessNAS does not survive plain DistributedDataParallel: each rank samples its own path, so
parameters go unused and α drifts apart. Here every rank draws the same batch order and the same
paths from identically seeded CPU generators, loads only its share of each global batch, and
averages weight and α gradients before every optimizer step, so the ranks stay identical.
Batch norm is computed over the global batch (`GlobalBatchNorm`), which makes a step of N
processes the step of one process on the same global batch, up to float rounding.

Why not DDP: its reducer registers parameters when it is built and needs every forward to go
through its wrapper, while a search step trains a changing subset of parameters, freezes the
weights for architecture steps, and (REINFORCE) sets α's gradient by hand. Averaging what each
optimizer is about to apply covers all of these with one collective per step.

The process group is torchrun's (`env://`): gloo on the CPU, NCCL on CUDA. `launch` runs
`torchrun --standalone --nproc-per-node N -m latkit ...` through torch's own launcher.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from latkit.errors import LatkitError
from latkit.search.placement import Precision, train_device


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the group; `DataParallel()` is a single process."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and times the found network."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise LatkitError(
                f"--batch-size {batch_size} does not split evenly over {self.world_size} "
                "processes; the global batch must be a multiple of the process count"
            )

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch of indices."""
        if not self.active:
            return index
        return torch.tensor_split(index, self.world_size)[self.rank]

    def average(self, tensors: Iterable[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the ranks (one all-reduce per dtype)."""
        tensors = list(tensors)
        if not self.active or not tensors:
            return
        for dtype in {t.dtype for t in tensors}:
            group = [t for t in tensors if t.dtype == dtype]
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.all_reduce(flat)
            flat.div_(self.world_size)
            for t, part in zip(group, flat.split([t.numel() for t in group])):
                t.copy_(part.view_as(t))

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        self.average(p.grad for p in params if p.grad is not None)

    def average_before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average the gradients of `optimizer`'s parameters before each of its steps."""
        if not self.active:
            return

        def hook(opt: torch.optim.Optimizer, *_: object) -> None:
            self.average_gradients(p for group in opt.param_groups for p in group["params"])

        optimizer.register_step_pre_hook(hook)

    def mean(self, values: Sequence[float], device: torch.device) -> list[float]:
        """The mean of each value over the ranks (a local value when alone)."""
        if not self.active or not values:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return (tensor / self.world_size).tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (all ranks must stop at the same step)."""
        if not self.active:
            return flag
        tensor = torch.tensor([int(flag)], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def from_main(self, values: Sequence[int], device: torch.device) -> tuple[int, ...]:
        """Rank 0's `values` on every rank (e.g. the architecture it settled on alone)."""
        if not self.active:
            return tuple(values)
        tensor = torch.tensor(list(values), dtype=torch.int64, device=device)
        dist.broadcast(tensor, src=0)
        return tuple(int(v) for v in tensor.tolist())

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sync_batch_norm(self, module: nn.Module) -> nn.Module:
        """Swap every BatchNorm2d of `module` for a `GlobalBatchNorm` (before optimizers exist)."""
        if not self.active:
            return module
        for name, child in module.named_children():
            if type(child) is nn.BatchNorm2d:
                synced = GlobalBatchNorm(
                    child.num_features,
                    child.eps,
                    child.momentum,
                    child.affine,
                    child.track_running_stats,
                ).to(child.weight.device if child.affine else child.running_mean.device)
                synced.load_state_dict(child.state_dict())
                synced.train(child.training)
                setattr(module, name, synced)
            else:
                self.sync_batch_norm(child)
        return module


class SumOverRanks(torch.autograd.Function):
    """Σ over the ranks, differentiable: the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.BatchNorm2d):
    """Batch norm whose batch statistics span the global batch, on any device and backend.

    Each rank sums x and x² over its share and one all-reduce (`SumOverRanks`) adds them up; its
    backward adds the ranks' gradients, so the statistics get the gradient of the whole batch.
    Torch's SyncBatchNorm does this on GPUs only. Statistics are taken in float32 whatever the
    autocast dtype. Outside a process group, or in eval mode, it is plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        xf = x.float()
        channels = x.shape[1]
        count = xf.new_tensor([x.numel() / channels])
        local = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count])
        stats = SumOverRanks.apply(local)
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels : 2 * channels] / total - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * total / (total - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - factor).add_(factor * mean)
                self.running_var.mul_(1 - factor).add_(factor * unbiased)
        shape = (1, channels, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


@dataclass(frozen=True)
class Session:
    """Where this process trains: its device, precision and place in the data-parallel group."""

    device: torch.device
    precision: Precision
    group: DataParallel = field(default_factory=DataParallel)


def _torchrun_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def training_session(device: str = "cpu", amp: str | None = None) -> Iterator[Session]:
    """The device and precision to train on; inside torchrun, also its process group.

    torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous address; the group is joined
    with `init_process_group` (gloo on CPU, NCCL on CUDA) and left when the block ends.
    """
    world = _torchrun_world()
    if world <= 1:
        place = train_device(device)
        yield Session(place, Precision(place, amp))
        return
    place = train_device(device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if place.type not in ("cpu", "cuda"):
        raise LatkitError(
            f"a data-parallel search trains on cpu (gloo) or cuda (NCCL), not {place.type}"
        )
    if place.type == "cuda":
        torch.cuda.set_device(place)
    dist.init_process_group("nccl" if place.type == "cuda" else "gloo")
    try:
        yield Session(place, Precision(place, amp), DataParallel(dist.get_rank(), world))
    finally:
        dist.destroy_process_group()


def strip_option(args: Sequence[str], option: str) -> list[str]:
    """`args` without `option VALUE` / `option=VALUE`."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return kept


def launch(nproc: int, args: Sequence[str]) -> None:
    """Run `latkit ARGS` in `nproc` processes on this machine, through torchrun's launcher."""
    if _torchrun_world() > 1:
        raise LatkitError("--nproc starts torchrun itself; inside torchrun leave it out")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "-m", "latkit", *args])
    except SignalException:  # Ctrl-C: torchrun passed it on; each process said what it saved
        raise KeyboardInterrupt() from None
    except ChildFailedError as exc:
        ranks = ", ".join(str(f.local_rank) for f in exc.failures.values())
        raise LatkitError(
            f"the search failed in process(es) {ranks}; see their errors above"
        ) from None
