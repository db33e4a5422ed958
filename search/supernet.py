"""The over-parameterised network of a search space: fixed head and tail, one MixedOp per layer.

Every module comes from `latkit.modules.build_op`, the same reference modules that were profiled,
re-initialised for training: `build_op` gives batch norm random statistics so that exporters must
fold them, which is right for timing and wrong for learning.

Two init choices make a supernet trainable in the few hundred steps a CPU run affords (ProxylessNAS
trains ~10^5 steps from independent inits). Residual branches start at zero (their last BN scale is
0, as in Goyal et al. 2017), so every candidate of a residual layer starts as the identity. And the
MBConv candidates of a layer start *nested*: each takes its weights from the leading channels and
the centre of the kernel of the layer's largest candidate, so they start as near-copies of one
function. Training then moves every candidate's own weights independently; with independent
inits a small supernet on small data does not leave chance level in that budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from latkit.modules import MBConv, build_op
from latkit.ops import OpSpec
from latkit.search.mixed_op import MixedOp
from latkit.spaces import Network, SearchSpace


def trainable_op(spec: OpSpec, seed: int = 0) -> nn.Module:
    """`build_op(spec)` in train mode with standard training init (He fan-out convs, identity BN)."""
    module = build_op(spec, seed)
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
        elif isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            m.weight.data.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            m.weight.data.normal_(0.0, 0.01, generator=generator)
            m.bias.data.zero_()
    if isinstance(module, MBConv) and spec.skip:
        module.project[1].weight.data.zero_()
    return module.train()


@torch.no_grad()
def nest_candidates(candidates: Sequence[nn.Module]) -> None:
    """Overwrite each MBConv's convs with slices of the largest candidate's (see module doc)."""
    convs = [c for c in candidates if isinstance(c, MBConv) and c.spec.groups == 1]
    if len(convs) < 2:
        return
    big = max(convs, key=lambda c: (c.spec.mid, c.spec.kernel))
    for c in convs:
        mid, k, offset = c.spec.mid, c.spec.kernel, (big.spec.kernel - c.spec.kernel) // 2
        if c is big or mid > big.spec.mid or k > big.spec.kernel:
            continue
        if c.expand is not None and big.expand is not None:
            c.expand[0].weight.copy_(big.expand[0].weight[:mid])
        depthwise = big.depthwise[0].weight[:mid, :, offset : offset + k, offset : offset + k]
        c.depthwise[0].weight.copy_(depthwise)
        c.project[0].weight.copy_(big.project[0].weight[:, :mid])


def trainable_network(network: Network | Sequence[OpSpec], seed: int = 0) -> nn.Sequential:
    """A standalone network of fresh trainable modules, for training the found architecture."""
    ops = network.ops if isinstance(network, Network) else tuple(network)
    return nn.Sequential(*(trainable_op(op, seed * 1000 + i) for i, op in enumerate(ops)))


class SuperNet(nn.Module):
    """Head, one `MixedOp` per searchable layer of `space`, tail; outputs class logits."""

    def __init__(
        self, space: SearchSpace, mode: str = "two-path", seed: int = 0, batch: int = 1
    ) -> None:
        super().__init__()
        self.space = space
        head, tail = space.fixed_ops(batch)
        self.layers = space.layers(batch)
        generator = torch.Generator().manual_seed(seed)
        base = seed * 1000
        self.head = nn.Sequential(*(trainable_op(op, base + i) for i, op in enumerate(head)))
        count = len(head)
        mixed = []
        for layer in self.layers:
            candidates = []
            for op in layer.candidates:
                candidates.append(trainable_op(op, base + count))
                count += 1
            nest_candidates(candidates)
            mixed.append(MixedOp(candidates, mode, generator=generator))
        self.mixed = nn.ModuleList(mixed)
        self.tail = nn.Sequential(
            *(trainable_op(op, base + count + i) for i, op in enumerate(tail))
        )

    @property
    def mode(self) -> str:
        return self.mixed[0].mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        for op in self.mixed:
            x = op(x)
        return self.tail(x)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [op.alpha for op in self.mixed]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def sample(self, phase: str, generator: torch.Generator | None = None) -> None:
        """Choose every layer's path for the next `weights` or `arch` step (`fixed`: argmax)."""
        for op in self.mixed:
            op.sample(phase, generator)

    def rescale(self) -> None:
        for op in self.mixed:
            op.rescale()

    def sampled_arch(self) -> tuple[int, ...]:
        return tuple(op.active for op in self.mixed)

    def arch(self) -> tuple[int, ...]:
        """The argmax architecture."""
        return tuple(op.chosen for op in self.mixed)

    def probs(self) -> list[np.ndarray]:
        return [op.probs.detach().float().cpu().numpy().copy() for op in self.mixed]

    def entropy(self) -> float:
        """Mean entropy of the layers' architecture distributions, in nats."""
        with torch.no_grad():
            return float(torch.stack([op.entropy() for op in self.mixed]).mean())
