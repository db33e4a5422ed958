"""FBNet's family: its inverted-residual blocks (`irf`) and its `skip` candidate.

FBNet's spaces (`fbnet`, `fbnet-cifar`) keep ProxylessNAS's layout and add two things: block
names of its own (`k3_e1_g2`, as HW-NAS-Bench lists its candidates), and `skip`, which is the
identity where a layer keeps its shape and a 1x1 conv where the shape changes, so every layer,
strided ones included, may be skipped.
"""

from __future__ import annotations

from latkit.ops import OpSpec


def block_name(op: OpSpec) -> str:
    """FBNet's name of a block: `k{kernel}_e{expand}`, with `_g{groups}` for grouped 1x1s."""
    return f"k{op.kernel}_e{op.expand:g}" + (f"_g{op.groups}" if op.groups > 1 else "")


def skip_op(
    identity: OpSpec | None, hw: int, cin: int, cout: int, stride: int, act: str, batch: int
) -> OpSpec:
    """What `skip` is at a layer: `identity` where the layer keeps its shape, else the 1x1
    conv that makes the shape."""
    return identity or OpSpec("conv", hw, cin, cout, stride=stride, act=act, batch=batch)
