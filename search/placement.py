"""Where and in what precision the supernet trains: `--train-device` and `--amp`.

This is the training device only. Latency is always F of the target device file, and the found
network is timed on that target, whatever trains the supernet.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from latkit.errors import LatkitError

TRAIN_DEVICES = "cpu, cuda, cuda:N, mps or auto"
AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _torch_build() -> str:
    cuda = torch.version.cuda
    return f"torch {torch.__version__}, " + (f"built for CUDA {cuda}" if cuda else "a CPU build")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def train_device(spec: str, local_rank: int | None = None) -> torch.device:
    """The torch device `--train-device spec` names, checked to exist here.

    `auto` takes CUDA, else Apple's MPS, else the CPU. Under torchrun (`local_rank` given) `cuda`
    means this process's own GPU, cuda:LOCAL_RANK.
    """
    text = spec.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise LatkitError(f"--train-device mps: no usable Apple GPU here ({_torch_build()})")
        return torch.device("mps")
    kind, _, index = text.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise LatkitError(f"--train-device {spec!r} is not one of {TRAIN_DEVICES}")
    if index and local_rank is not None:
        raise LatkitError(
            f"--train-device {spec} names one GPU, but torchrun gives each process its own: "
            "use --train-device cuda"
        )
    if not torch.cuda.is_available():
        raise LatkitError(f"--train-device {spec}: no usable CUDA GPU here ({_torch_build()})")
    number = local_rank if local_rank is not None else int(index or 0)
    count = torch.cuda.device_count()
    if number >= count:
        raise LatkitError(f"--train-device cuda:{number}: this machine has {count} CUDA GPU(s)")
    return torch.device("cuda", number)


@dataclass(frozen=True)
class Precision:
    """Automatic mixed precision on the training device: off, bf16, or fp16 with loss scaling.

    Weight steps run under autocast. Architecture steps run under bf16 autocast too, but in full
    precision with fp16: an arch strategy takes its own backward and has no loss scaler, and
    fp16's small exponent range would flush the gate gradients to zero.
    """

    device: torch.device = torch.device("cpu")
    amp: str | None = None

    def __post_init__(self) -> None:
        if self.amp is None:
            return
        if self.amp not in AMP_DTYPES:
            raise LatkitError(f"--amp {self.amp!r} is not one of {', '.join(AMP_DTYPES)}")
        if not torch.amp.is_autocast_available(self.device.type):
            raise LatkitError(f"--amp: torch has no autocast on {self.device.type}")
        if self.amp == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise LatkitError(f"--amp bf16: {torch.cuda.get_device_name(self.device)} has no bf16")

    def autocast(self, arch: bool = False) -> contextlib.AbstractContextManager:
        if self.amp is None or (arch and self.amp == "fp16"):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 weight steps; a pass-through otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
