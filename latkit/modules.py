"""Torch modules for every op type, built from an `OpSpec` through a registry keyed by type.

These are the reference implementations: every exporter (ONNX, TFLite) writes the weights of these
modules, and every numerical check compares against them in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from latkit.ops import OpSpec, shuffle_order
from latkit.registry import Registry

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu6": lambda: nn.ReLU6(inplace=False),
    "hswish": lambda: nn.Hardswish(inplace=False),
    "relu": lambda: nn.ReLU(inplace=False),
    "swish": lambda: nn.SiLU(inplace=False),
}


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "relu6"
) -> nn.Sequential:
    """Conv without bias, batch norm, optional activation: the building block of every op."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Mean, 1x1 reduce, activation, 1x1 expand, gate, scale. once-for-all's (`mbv3`) reduces
    mid/4 channels with ReLU and a hard sigmoid; MnasNet/EfficientNet's (`effnet`) reduces to a
    quarter of the block's input with the block's activation and a sigmoid."""

    def __init__(self, spec: OpSpec) -> None:
        super().__init__()
        channels, reduced = spec.mid, spec.se_reduced
        effnet = spec.se_style == "effnet"
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = ACTIVATIONS[spec.act]() if effnet else nn.ReLU(inplace=False)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Sigmoid() if effnet else nn.Hardsigmoid(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * self.gate(scale)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle as the fixed channel permutation it is (`shuffle_order`). A
    gather of channels needs no spatial size, so it exports shape-free (ONNX Gather, LiteRT
    GATHER)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        order = torch.tensor(shuffle_order(channels, groups))
        self.register_buffer("order", order, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 1, self.order)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (an `mbconv` skips it at ratio 1, FBNet's `irf` keeps it),
    channel shuffle after a grouped `irf` expansion, depthwise kxk, optional SE, 1x1 project."""

    def __init__(self, spec: OpSpec) -> None:
        super().__init__()
        self.spec = spec
        mid = spec.mid
        self.expand = (
            conv_bn(spec.cin, mid, 1, groups=spec.groups, act=spec.act)
            if spec.has_expand_conv
            else None
        )
        self.shuffle = ChannelShuffle(mid, spec.groups) if spec.shuffle else None
        self.depthwise = conv_bn(mid, mid, spec.kernel, spec.stride, groups=mid, act=spec.act)
        self.se = SqueezeExcite(spec) if spec.se else None
        self.project = conv_bn(mid, spec.cout, 1, groups=spec.groups, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        if self.shuffle is not None:
            out = self.shuffle(out)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.spec.skip else out


class Zero(nn.Module):
    """ProxylessNAS's zero op: no computation. With an identity skip the block is the identity."""

    def __init__(self, spec: OpSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.skip:
            return x
        s = self.spec.stride
        return x.new_zeros(x.shape[0], self.spec.cout, -(-x.shape[2] // s), -(-x.shape[3] // s))


class Logits(nn.Module):
    """Global average pool (when the input is larger than 1x1) and a linear classifier."""

    def __init__(self, spec: OpSpec) -> None:
        super().__init__()
        self.pool = spec.input_hw > 1
        self.linear = nn.Linear(spec.cin, spec.cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(2, 3)) if self.pool else x.flatten(1)
        return self.linear(x)


class GlobalPool(nn.Module):
    def __init__(self, spec: OpSpec) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def _conv(spec: OpSpec) -> nn.Module:
    return conv_bn(spec.cin, spec.cout, spec.kernel, spec.stride, act=spec.act)


#: the module of each op type
MODULES: Registry[Callable[[OpSpec], nn.Module]] = Registry("op type")
for _type, _factory in (
    ("mbconv", MBConv),
    ("irf", MBConv),
    ("zero", Zero),
    ("conv", _conv),
    ("linear", Logits),
    ("pool", GlobalPool),
):
    MODULES.register(_type, _factory)


def build_op(spec: OpSpec, seed: int | None = 0) -> nn.Module:
    """The eval-mode module for `spec`, with seeded weights and non-trivial BN statistics."""
    MODULES.check(spec.type)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        module = MODULES.create(spec.type, spec)
        randomize_bn(module, generator)
    return module.eval()


def randomize_bn(module: nn.Module, generator: torch.Generator | None) -> None:
    """Fresh BN layers are the identity; give them real statistics so exporters must fold them
    (and fold them into distinct conv biases, as a trained network's are)."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            bn.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            bn.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def build_network(ops: Sequence[OpSpec], seed: int | None = 0) -> nn.Sequential:
    """A whole network as the chain of its ops, each seeded differently."""
    base = 0 if seed is None else seed
    return nn.Sequential(
        *(build_op(op, None if seed is None else base + i) for i, op in enumerate(ops))
    ).eval()


def example_input(spec: OpSpec, seed: int = 0) -> torch.Tensor:
    """A random NCHW input of the op's shape and batch."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(spec.batch, spec.cin, spec.input_hw, spec.input_hw, generator=generator)
