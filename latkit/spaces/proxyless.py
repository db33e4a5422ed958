"""ProxylessNAS's family: its `net.config` JSON, its candidate names and its `zero` identity.

once-for-all's MobileNetV3 config is the same layout grown by a final expand layer, a pool, SE
and h-swish (the same authors' code), so it is read and written here too: `network_config`
writes whichever of the two the ops make, `config_ops` reads either. FBNet's blocks (`irf`),
grouped 1x1 convs, swish (`act_func: swish`) and EfficientNet's SE (`se_style: effnet`), which
neither format has, are written as latkit's additions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from latkit.errors import LatkitError
from latkit.ops import BLOCK_TYPES, OpSpec
from latkit.spaces.layout import ACT_NAMES, plain_number

#: activation names as the configs write them
CONFIG_ACTS = {"relu6": "relu6", "relu": "relu", "hswish": "h_swish", "swish": "swish"}


def block_name(op: OpSpec) -> str:
    """ProxylessNAS's name of a candidate: `3x3_MBConv6`, `zero`, `3x3_Conv` (grouped, SE and
    h-swish or swish blocks carry suffixes)."""
    if op.type == "zero":
        return "zero"
    if op.type == "conv":
        return f"{op.kernel}x{op.kernel}_Conv"
    name = f"{op.kernel}x{op.kernel}_MBConv{op.expand:g}"
    if op.groups > 1:
        name += f"_G{op.groups}"
    act = {"hswish": "_H_SWISH", "swish": "_SWISH"}.get(op.act, "")
    return name + ("_SE" if op.se else "") + act


def network_config(ops: Sequence[OpSpec]) -> dict[str, Any]:
    """ProxylessNAS `net.config` JSON, or once-for-all's MobileNetV3 config when the ops end in
    final expand, pool, feature mix and logits, so the authors' tooling reads it."""
    stem, *middle = ops
    mobilenet_v3 = [op.type for op in middle[-4:]] == ["conv", "pool", "conv", "linear"]
    tail = middle[-4:] if mobilenet_v3 else middle[-2:]
    middle = middle[: len(middle) - len(tail)]
    if stem.type != "conv" or [op.type for op in tail][-2:] != ["conv", "linear"]:
        raise LatkitError("a net.config needs stem conv, blocks, feature-mix conv and logits")
    blocks = [_block_config(op, mobilenet_v3) for op in middle]
    logits = tail[-1]
    config: dict[str, Any] = {
        "name": "MobileNetV3" if mobilenet_v3 else "ProxylessNASNets",
        "input_size": stem.input_hw,
        "first_conv": _conv_config(stem),
        "blocks": blocks,
    }
    if mobilenet_v3:
        config["final_expand_layer"] = _conv_config(tail[0])
    config["feature_mix_layer"] = _conv_config(tail[-2])
    config["classifier"] = {
        "name": "LinearLayer",
        "in_features": logits.cin,
        "out_features": logits.cout,
        "bias": True,
    }
    return config


def config_ops(config: dict[str, Any], input_hw: int | None, batch: int) -> list[OpSpec]:
    """The ops of a ProxylessNAS `net.config` or a once-for-all MobileNetV3 config, checked to
    chain (the published ones omit the input size: 224 unless `input_hw` or the file says
    otherwise)."""
    try:
        hw = int(input_hw or config.get("input_size") or config.get("image_size") or 224)
        stem = _conv_from_config(config["first_conv"], hw, batch)
        ops = [stem]
        hw, channels = stem.output_hw, stem.cout
        for block in config["blocks"]:
            op = _block_from_config(block, hw, channels, batch)
            ops.append(op)
            hw, channels = op.output_hw, op.cout
        if config.get("final_expand_layer"):
            expand = _conv_from_config(config["final_expand_layer"], hw, batch)
            pool = OpSpec("pool", hw, expand.cout, expand.cout, batch=batch)
            ops += [expand, pool]
            hw = 1
        mix = _conv_from_config(config["feature_mix_layer"], hw, batch)
        classifier = config["classifier"]
        logits = OpSpec(
            "linear", hw, classifier["in_features"], classifier["out_features"], batch=batch
        )
        ops += [mix, logits]
    except (KeyError, TypeError, ValueError) as exc:
        raise LatkitError(f"not a ProxylessNAS net.config: missing or bad field {exc}") from exc
    _check_chain(ops)
    return ops


def _act_name(value: Any) -> str:
    act = ACT_NAMES.get(str(value))
    if act is None:
        raise ValueError(f"act_func {value!r} (latkit runs {', '.join(ACT_NAMES)})")
    return act


def _conv_config(op: OpSpec) -> dict[str, Any]:
    return {
        "name": "ConvLayer",
        "kernel_size": op.kernel,
        "stride": op.stride,
        "in_channels": op.cin,
        "out_channels": op.cout,
        "use_bn": True,
        "act_func": CONFIG_ACTS[op.act],
    }


def _conv_from_config(conv: dict[str, Any], hw: int, batch: int) -> OpSpec:
    if conv.get("groups", 1) not in (1, None) or conv.get("dilation", 1) != 1:
        raise ValueError("groups/dilation of a ConvLayer (latkit's convs are dense)")
    return OpSpec(
        "conv",
        hw,
        conv["in_channels"],
        conv["out_channels"],
        stride=conv.get("stride", 1),
        kernel=conv["kernel_size"],
        act=_act_name(conv.get("act_func", "relu6")),
        batch=batch,
    )


def _block_config(op: OpSpec, mobilenet_v3: bool) -> dict[str, Any]:
    shortcut = (
        {"name": "IdentityLayer", "in_channels": op.cin, "out_channels": op.cout}
        if op.skip
        else None
    )
    if op.type == "zero":
        conv: dict[str, Any] = {"name": "ZeroLayer", "stride": op.stride}
    elif op.type == "conv":
        conv = _conv_config(op)
    elif op.type in BLOCK_TYPES:
        conv = _inverted_config(op, mobilenet_v3)
    else:
        raise LatkitError(f"op type {op.type!r} cannot be a block in a net.config")
    return {
        "name": "ResidualBlock" if mobilenet_v3 else "MobileInvertedResidualBlock",
        "conv" if mobilenet_v3 else "mobile_inverted_conv": conv,
        "shortcut": shortcut,
    }


def _inverted_config(op: OpSpec, mobilenet_v3: bool) -> dict[str, Any]:
    """An inverted-residual block (MBConv, FBNet's IRF) as the config's `conv` entry."""
    conv: dict[str, Any] = {
        "name": "IRFBlock" if op.type == "irf" else _mbconv_name(mobilenet_v3),
        "in_channels": op.cin,
        "out_channels": op.cout,
        "kernel_size": op.kernel,
        "stride": op.stride,
        "expand_ratio": plain_number(op.expand),
    }
    if mobilenet_v3:
        conv |= {"mid_channels": op.mid, "act_func": CONFIG_ACTS[op.act], "use_se": op.se}
    else:
        conv |= {"act_func": CONFIG_ACTS[op.act]} if op.act != "relu6" else {}
        conv |= {"use_se": True} if op.se else {}
    if op.se_style != "mbv3":
        conv["se_style"] = op.se_style
    if op.groups != 1:
        conv["pw_groups"] = op.groups
    return conv


def _mbconv_name(mobilenet_v3: bool) -> str:
    return "MBConvLayer" if mobilenet_v3 else "MBInvertedConvLayer"


def _block_from_config(block: dict[str, Any], hw: int, channels: int, batch: int) -> OpSpec:
    conv = block.get("mobile_inverted_conv") or block["conv"]
    skip = block.get("shortcut") is not None
    kind = conv["name"]
    if kind == "ZeroLayer":
        return OpSpec("zero", hw, channels, channels, stride=conv["stride"], skip=skip, batch=batch)
    if kind == "ConvLayer":
        return _conv_from_config(conv, hw, batch)
    if kind not in ("MBInvertedConvLayer", "MBConvLayer", "IRFBlock"):
        raise ValueError(f"block {kind!r}")
    if conv.get("groups") not in (None, 1):
        raise ValueError("groups of the depthwise conv (latkit's depthwise convs are per channel)")
    cin = conv["in_channels"]
    mid = conv.get("mid_channels")
    expand = float(conv["expand_ratio"]) if mid is None else mid / cin
    return OpSpec(
        "irf" if kind == "IRFBlock" else "mbconv",
        hw,
        cin,
        conv["out_channels"],
        stride=conv["stride"],
        kernel=conv["kernel_size"],
        expand=expand,
        groups=int(conv.get("pw_groups", 1)),
        se=bool(conv.get("use_se", False)),
        act=_act_name(conv.get("act_func", "relu6")),
        skip=skip,
        batch=batch,
        se_style=str(conv.get("se_style", "mbv3")),
    )


def _check_chain(ops: Sequence[OpSpec]) -> None:
    for prev, op in zip(ops, ops[1:]):
        if prev.cout != op.cin or prev.output_hw != op.input_hw:
            raise LatkitError(
                f"ops do not chain: {prev.key} gives {prev.output_hw}x{prev.output_hw}x{prev.cout}"
                f" but {op.key} takes {op.input_hw}x{op.input_hw}x{op.cin}"
            )
