"""Features of an op: what latency is a function of.

Two views of the same op spec:

- `components`: additive cost terms (MACs, elements, bytes, kernel launches) split by the kind of
  work, so latency ~ a non-negative weighted sum of them. Sums of these over a network are the
  network's features too, which is what lets F be fitted from whole-network timings.
- `descriptors`: the op fields plus MACs, params and activation bytes, for models that learn
  shapes (log-linear regression, trees).

Both are cached per op spec (specs are hashable), because the search asks for the same candidates
over and over.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from latkit.ops import BLOCK_TYPES, OP_TYPES, OpSpec

COMPONENTS: tuple[str, ...] = (
    "calls",  # one per non-zero op: the runtime's per-call cost
    "kernels",  # inner kernels launched (convs, activations, adds, SE ops)
    "macs",  # all multiply-accumulates, at one shared rate...
    "dw_macs",  # ...plus extra for depthwise ones (kernel area included; worse data reuse)
    "dw_elems",  # depthwise output elements: the per-pixel cost independent of the kernel
    "conv_macs",  # ...plus extra for dense kxk convolutions (stems: im2col)
    "fc_macs",  # ...plus extra for fully connected layers (matrix-vector at small batch)
    "act_elems",  # elements through any activation
    "hswish_elems",  # elements through hard-swish (costlier than ReLU6)
    "swish_elems",  # elements through swish (a sigmoid and a multiply: costlier still)
    "se_elems",  # squeeze-excite: pooled and rescaled elements plus its small FCs
    "skip_elems",  # identity-shortcut additions
    "pool_elems",  # global-average-pooled elements
    "io_bytes",  # activation bytes read and written
    "weight_bytes",  # float32 weights streamed in
    "shuffle_elems",  # elements moved by a channel shuffle (FBNet's grouped blocks)
)

DESCRIPTORS: tuple[str, ...] = (
    *(f"is_{t}" for t in OP_TYPES),
    "input_hw",
    "output_hw",
    "cin",
    "cout",
    "mid",
    "stride",
    "kernel",
    "expand",
    "groups",
    "se",
    "se_effnet",
    "hswish",
    "swish",
    "skip",
    "batch",
    "macs",
    "params",
    "activation_bytes",
)

#: descriptors whose logarithm a log-linear model sees (the rest enter as they are)
LOG_DESCRIPTORS: frozenset[str] = frozenset(
    {"input_hw", "output_hw", "cin", "cout", "mid", "macs", "params", "activation_bytes", "batch"}
)


@lru_cache(maxsize=65536)
def _components(op: OpSpec) -> tuple[float, ...]:
    c = dict.fromkeys(COMPONENTS, 0.0)
    if op.type == "zero":
        return tuple(c.values())
    b, hi, ho = op.batch, op.input_hw, op.output_hw
    in_elems, out_elems = b * hi * hi * op.cin, b * ho * ho * op.cout
    c["calls"] = 1.0
    c["io_bytes"] = float(op.activation_bytes)
    c["weight_bytes"] = 4.0 * op.params
    hswish, swish = op.act == "hswish", op.act == "swish"
    if op.type in BLOCK_TYPES:
        mid = op.mid
        mid_in, mid_out = b * hi * hi * mid, b * ho * ho * mid
        kernels = 3.0  # depthwise, its activation, project
        if op.has_expand_conv:
            c["macs"] += in_elems * mid / op.groups
            c["act_elems"] += mid_in
            kernels += 2
        if op.shuffle:
            c["shuffle_elems"] = mid_in
            kernels += 1
        c["dw_macs"] = mid_out * op.kernel * op.kernel
        c["dw_elems"] = mid_out
        c["act_elems"] += mid_out
        if op.se:
            c["se_elems"] = 2.0 * mid_out + b * 2 * mid * op.se_reduced
            kernels += 5
        c["macs"] += mid_out * op.cout / op.groups + c["dw_macs"]
        if op.skip:
            c["skip_elems"] = out_elems
            kernels += 1
        if hswish:
            c["hswish_elems"] = c["act_elems"]
        if swish:  # the multiply after each sigmoid is a kernel of its own
            c["swish_elems"] = c["act_elems"]
            kernels += 1 + int(op.has_expand_conv) + int(op.se and op.se_style == "effnet")
        c["kernels"] = kernels
    elif op.type == "conv":
        c["macs"] = float(b * op.macs)
        c["conv_macs"] = c["macs"] if op.kernel > 1 else 0.0
        c["act_elems"] = out_elems
        c["hswish_elems"] = out_elems if hswish else 0.0
        c["swish_elems"] = out_elems if swish else 0.0
        c["kernels"] = 3.0 if swish else 2.0
    elif op.type == "linear":
        c["macs"] = c["fc_macs"] = float(b * op.macs)
        c["pool_elems"] = in_elems if hi > 1 else 0.0
        c["kernels"] = 2.0 if hi > 1 else 1.0
    elif op.type == "pool":
        c["pool_elems"] = in_elems
        c["kernels"] = 1.0
    return tuple(c.values())


@lru_cache(maxsize=65536)
def _descriptors(op: OpSpec) -> tuple[float, ...]:
    values = {f"is_{t}": float(op.type == t) for t in OP_TYPES}
    values.update(
        input_hw=op.input_hw,
        output_hw=op.output_hw,
        cin=op.cin,
        cout=op.cout,
        mid=op.mid if op.type in BLOCK_TYPES else op.cin,
        stride=op.stride,
        kernel=op.kernel,
        expand=op.expand if op.type in BLOCK_TYPES else 1.0,
        groups=op.groups,
        se=float(op.se),
        se_effnet=float(op.se_style == "effnet"),
        hswish=float(op.act == "hswish"),
        swish=float(op.act == "swish"),
        skip=float(op.skip),
        batch=op.batch,
        macs=op.macs * op.batch,
        params=op.params,
        activation_bytes=op.activation_bytes,
    )
    return tuple(float(values[name]) for name in DESCRIPTORS)


def components(ops: Sequence[OpSpec]) -> np.ndarray:
    """(n, len(COMPONENTS)) additive cost terms; all zero for a zero op."""
    return np.array([_components(op) for op in ops], dtype=float).reshape(len(ops), -1)


def descriptors(ops: Sequence[OpSpec]) -> np.ndarray:
    """(n, len(DESCRIPTORS)) op fields plus MACs, params and activation bytes."""
    return np.array([_descriptors(op) for op in ops], dtype=float).reshape(len(ops), -1)


def log_descriptors(ops: Sequence[OpSpec]) -> np.ndarray:
    """Descriptors with sizes on a log scale, so a linear model in them is a power law."""
    x = descriptors(ops)
    for j, name in enumerate(DESCRIPTORS):
        if name in LOG_DESCRIPTORS:
            x[:, j] = np.log1p(x[:, j])
    return x
