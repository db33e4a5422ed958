"""Search spaces and whole networks, as plain data.

A `SearchSpace` is a stem, an optional fixed first block, stages of searchable layers and a head.
Each searchable layer offers the space's candidates: blocks (kernel x expand x groups, of the
space's block type) and, where the space has them, an identity (ProxylessNAS's `zero`, FBNet's
`skip`, which is a 1x1 conv where the shape changes, and once-for-all's elastic depth). An
architecture is one candidate index per searchable layer, at one of the space's input
resolutions; a `Network` is the resulting ordered list of op specs. Networks convert to and from
ProxylessNAS's `net.config` JSON and once-for-all's MobileNetV3 config; `load_arch` also reads
once-for-all's subnet choices (`ks`, `e`, `d`, `r`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from latkit.errors import LatkitError
from latkit.files import read_json, read_yaml
from latkit.ops import ACTS, BLOCK_TYPES, OpSpec

#: activation names in ProxylessNAS / once-for-all configs, and back
_ACT_NAMES = {"relu6": "relu6", "relu": "relu", "h_swish": "hswish", "hswish": "hswish"}
_CONFIG_ACTS = {"relu6": "relu6", "relu": "relu", "hswish": "h_swish"}
#: the candidate entries that are not blocks: `zero` is the identity where the layer keeps its
#: shape (and absent elsewhere); `skip` is that identity or, where the shape changes, a 1x1 conv
IDENTITIES = ("zero", "skip")


@dataclass(frozen=True)
class Stage:
    """`blocks` layers of `width` channels; the first has `stride`. Layers past `min_blocks` may
    be the identity (elastic depth); `act` and `se` apply to every block of the stage."""

    width: int
    blocks: int
    stride: int
    act: str = "relu6"
    se: bool = False
    min_blocks: int | None = None

    @property
    def elastic(self) -> bool:
        return self.min_blocks is not None and self.min_blocks < self.blocks


@dataclass(frozen=True)
class Candidate:
    """One choice of a searchable layer: a block shape, or an identity kind (`zero`, `skip`)."""

    kernel: int = 3
    expand: float = 1.0
    groups: int = 1
    identity: str = ""

    def to_yaml(self) -> Any:
        if self.identity:
            return self.identity
        out: dict[str, Any] = {"kernel": self.kernel, "expand": _number(self.expand)}
        if self.groups != 1:
            out["groups"] = self.groups
        return out


@dataclass(frozen=True)
class Layer:
    """One searchable position: its candidates, in the order architecture indices refer to."""

    index: int
    candidates: tuple[OpSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(candidate_name(op) for op in self.candidates)


def candidate_name(op: OpSpec) -> str:
    """ProxylessNAS's names (`3x3_MBConv6`, `zero`), FBNet's for its blocks (`k3_e1_g2`)."""
    if op.type == "zero":
        return "zero"
    if op.type == "conv":
        return f"{op.kernel}x{op.kernel}_Conv"
    if op.type == "irf":
        return f"k{op.kernel}_e{op.expand:g}" + (f"_g{op.groups}" if op.groups > 1 else "")
    name = f"{op.kernel}x{op.kernel}_MBConv{op.expand:g}"
    if op.groups > 1:
        name += f"_G{op.groups}"
    return name + ("_SE" if op.se else "") + ("_H_SWISH" if op.act == "hswish" else "")


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# --- whole networks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """A whole network: its ops in execution order. Latency-wise it is the sum of its ops."""

    ops: tuple[OpSpec, ...]
    name: str = "network"

    def to_config(self) -> dict[str, Any]:
        """ProxylessNAS `net.config` JSON, or once-for-all's MobileNetV3 config when the network
        ends in final expand, pool, feature mix and logits, so the authors' tooling reads it.
        Fields their formats lack (FBNet's blocks, grouped 1x1 convs) are latkit's additions."""
        stem, *middle = self.ops
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

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        input_hw: int | None = None,
        batch: int = 1,
        name: str = "network",
    ) -> Network:
        """Read a ProxylessNAS `net.config` or a once-for-all MobileNetV3 config (the published
        ones omit the input size: 224 unless `input_hw` or the file says otherwise)."""
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
        return cls(tuple(ops), name)

    @classmethod
    def load(cls, path: str | Path, batch: int = 1) -> Network:
        path = Path(path)
        config = read_json(path, "architecture")
        try:
            return cls.from_config(config, batch=batch, name=path.stem)
        except LatkitError as exc:
            raise LatkitError(f"{path}: {exc}") from exc


def _act_name(value: Any) -> str:
    act = _ACT_NAMES.get(str(value))
    if act is None:
        raise ValueError(f"act_func {value!r} (latkit runs {', '.join(_ACT_NAMES)})")
    return act


def _conv_config(op: OpSpec) -> dict[str, Any]:
    return {
        "name": "ConvLayer",
        "kernel_size": op.kernel,
        "stride": op.stride,
        "in_channels": op.cin,
        "out_channels": op.cout,
        "use_bn": True,
        "act_func": _CONFIG_ACTS[op.act],
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
        conv = {
            "name": "IRFBlock" if op.type == "irf" else _mbconv_name(mobilenet_v3),
            "in_channels": op.cin,
            "out_channels": op.cout,
            "kernel_size": op.kernel,
            "stride": op.stride,
            "expand_ratio": _number(op.expand),
        }
        if mobilenet_v3:
            conv |= {"mid_channels": op.mid, "act_func": _CONFIG_ACTS[op.act], "use_se": op.se}
        else:
            conv |= {"act_func": _CONFIG_ACTS[op.act]} if op.act != "relu6" else {}
            conv |= {"use_se": True} if op.se else {}
        if op.groups != 1:
            conv["pw_groups"] = op.groups
    else:
        raise LatkitError(f"op type {op.type!r} cannot be a block in a net.config")
    return {
        "name": "ResidualBlock" if mobilenet_v3 else "MobileInvertedResidualBlock",
        "conv" if mobilenet_v3 else "mobile_inverted_conv": conv,
        "shortcut": shortcut,
    }


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
    )


def _check_chain(ops: Sequence[OpSpec]) -> None:
    for prev, op in zip(ops, ops[1:]):
        if prev.cout != op.cin or prev.output_hw != op.input_hw:
            raise LatkitError(
                f"ops do not chain: {prev.key} gives {prev.output_hw}x{prev.output_hw}x{prev.cout}"
                f" but {op.key} takes {op.input_hw}x{op.input_hw}x{op.cin}"
            )


# --- search spaces -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """A ProxylessNAS-style space. Everything is derived from these fields (see the YAML files in
    `latkit/spaces/` for their meaning)."""

    name: str
    input_hw: int
    stem_channels: int
    stem_stride: int
    first_block_channels: int | None
    stages: tuple[Stage, ...]
    feature_mix_channels: int
    num_classes: int
    candidates: tuple[Candidate, ...]
    block: str = "mbconv"
    act: str = "relu6"
    stem_act: str = "relu6"
    first_block_act: str = "relu6"
    first_block_skip: bool = False
    final_expand_channels: int | None = None
    head_act: str = "relu6"
    resolutions: tuple[int, ...] = ()
    in_channels: int = 3
    description: str = ""

    # --- structure ------------------------------------------------------------------------------

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """Every input resolution of the space (just `input_hw` unless it is elastic)."""
        return self.resolutions or (self.input_hw,)

    def at_resolution(self, input_hw: int) -> SearchSpace:
        """The space fixed at one of its input sizes."""
        if input_hw not in self.input_sizes:
            raise LatkitError(
                f"space {self.name} has no input size {input_hw} "
                f"(it has {', '.join(map(str, self.input_sizes))})"
            )
        return replace(self, input_hw=input_hw, resolutions=())

    def _fixed_head(self, batch: int) -> tuple[OpSpec, ...]:
        stem = OpSpec(
            "conv",
            self.input_hw,
            self.in_channels,
            self.stem_channels,
            stride=self.stem_stride,
            kernel=3,
            act=self.stem_act,
            batch=batch,
        )
        if self.first_block_channels is None:
            return (stem,)
        first = OpSpec(
            "mbconv",
            stem.output_hw,
            self.stem_channels,
            self.first_block_channels,
            kernel=3,
            expand=1.0,
            act=self.first_block_act,
            skip=self.first_block_skip,
            batch=batch,
        )
        return stem, first

    def _candidate_ops(
        self, hw: int, cin: int, stage: Stage, stride: int, optional: bool, batch: int
    ) -> list[OpSpec]:
        keeps = stride == 1 and cin == stage.width
        identity = OpSpec("zero", hw, cin, cin, skip=True, batch=batch) if keeps else None
        ops: list[OpSpec] = []
        for c in self.candidates:
            if c.identity == "zero" and identity is not None:
                ops.append(identity)
            elif c.identity == "skip":
                ops.append(
                    identity
                    or OpSpec(
                        "conv", hw, cin, stage.width, stride=stride, act=stage.act, batch=batch
                    )
                )
            elif not c.identity:
                ops.append(
                    OpSpec(
                        self.block,
                        hw,
                        cin,
                        stage.width,
                        stride=stride,
                        kernel=c.kernel,
                        expand=c.expand,
                        groups=c.groups,
                        se=stage.se,
                        act=stage.act,
                        skip=keeps,
                        batch=batch,
                    )
                )
        if optional and identity is not None and identity not in ops:
            ops.append(identity)
        return ops

    def layers(self, batch: int = 1) -> tuple[Layer, ...]:
        """The searchable layers, in order, each with its candidate ops."""
        last = self._fixed_head(batch)[-1]
        hw, channels = last.output_hw, last.cout
        layers: list[Layer] = []
        for stage in self.stages:
            for block in range(stage.blocks):
                stride = stage.stride if block == 0 else 1
                optional = stage.elastic and block >= stage.min_blocks
                ops = self._candidate_ops(hw, channels, stage, stride, optional, batch)
                layers.append(Layer(len(layers), tuple(ops)))
                hw, channels = ops[0].output_hw, stage.width
        return tuple(layers)

    def fixed_ops(self, batch: int = 1) -> tuple[tuple[OpSpec, ...], tuple[OpSpec, ...]]:
        """(ops before the searchable layers, ops after them)."""
        head = self._fixed_head(batch)
        last = self.layers(batch)[-1].candidates[0]
        hw, channels, tail = last.output_hw, last.cout, []
        if self.final_expand_channels is not None:
            expand = OpSpec(
                "conv", hw, channels, self.final_expand_channels, act=self.head_act, batch=batch
            )
            tail += [expand, OpSpec("pool", hw, expand.cout, expand.cout, batch=batch)]
            hw, channels = 1, expand.cout
        mix = OpSpec(
            "conv", hw, channels, self.feature_mix_channels, act=self.head_act, batch=batch
        )
        tail += [mix, OpSpec("linear", hw, mix.cout, self.num_classes, batch=batch)]
        return head, tuple(tail)

    def distinct_ops(self, batch: int = 1) -> list[OpSpec]:
        """Every op worth timing, once, at every input size: fixed ops and all candidates except
        the identity (it costs nothing)."""
        ops: list[OpSpec] = []
        for hw in self.input_sizes:
            space = self.at_resolution(hw)
            head, tail = space.fixed_ops(batch)
            ops.extend(head)
            for layer in space.layers(batch):
                ops.extend(op for op in layer.candidates if op.type != "zero")
            ops.extend(tail)
        return list(dict.fromkeys(ops))

    # --- architectures --------------------------------------------------------------------------

    def network(
        self,
        arch: Sequence[int],
        batch: int = 1,
        name: str = "network",
        input_hw: int | None = None,
    ) -> Network:
        space = self if input_hw is None else self.at_resolution(input_hw)
        layers = space.layers(batch)
        if len(arch) != len(layers):
            raise LatkitError(f"space {self.name} has {len(layers)} layers, arch has {len(arch)}")
        head, tail = space.fixed_ops(batch)
        chosen = []
        for layer, index in zip(layers, arch):
            if not 0 <= index < len(layer.candidates):
                raise LatkitError(f"layer {layer.index} has no candidate {index}")
            chosen.append(layer.candidates[index])
        return Network((*head, *chosen, *tail), name)

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        """A random architecture: each layer's candidate uniformly, except that in a stage of
        elastic depth the depth is drawn first (uniformly) and the layers past it are the
        identity, as once-for-all samples its subnets."""
        arch: list[int] = []
        layers = iter(self.layers())
        for stage in self.stages:
            stage_layers = [next(layers) for _ in range(stage.blocks)]
            if not stage.elastic:
                arch += [rng.randrange(len(layer.candidates)) for layer in stage_layers]
                continue
            depth = rng.randint(stage.min_blocks, stage.blocks)
            for block, layer in enumerate(stage_layers):
                blocks = [i for i, op in enumerate(layer.candidates) if op.type != "zero"]
                arch.append(rng.choice(blocks) if block < depth else _identity_index(layer))
        return tuple(arch)

    def sample_networks(self, n: int, seed: int = 0) -> list[tuple[tuple[int, ...], Network]]:
        """`n` distinct random architectures, reproducible from `seed` (at random input sizes
        when the space has several)."""
        rng = random.Random(seed)
        seen: dict[tuple[int, tuple[int, ...]], Network] = {}
        attempts = 0
        sizes = self.input_sizes
        while len(seen) < n and attempts < 100 * n:
            hw = rng.choice(sizes) if len(sizes) > 1 else self.input_hw
            arch = self.sample(rng)
            suffix = f"@{hw}" if len(sizes) > 1 else ""
            name = f"{self.name}-{len(seen)}{suffix}"
            seen.setdefault((hw, arch), self.network(arch, name=name, input_hw=hw))
            attempts += 1
        return [(arch, network) for (_, arch), network in seen.items()]

    def arch_of(self, network: Network) -> tuple[int, ...]:
        """The candidate indices that produce `network` (batch ignored)."""
        space = self.at_resolution(network.ops[0].input_hw)
        layers = space.layers()
        head, tail = space.fixed_ops()
        middle = [
            op.replace(batch=1) for op in network.ops[len(head) : len(network.ops) - len(tail)]
        ]
        if len(middle) != len(layers):
            raise LatkitError(f"network {network.name} does not fit space {self.name}")
        try:
            return tuple(layer.candidates.index(op) for layer, op in zip(layers, middle))
        except ValueError as exc:
            raise LatkitError(f"network {network.name} uses an op outside {self.name}") from exc

    def ofa_network(self, spec: dict[str, Any], batch: int = 1, name: str = "network") -> Network:
        """The network of once-for-all subnet choices: `ks` and `e` per block (`max depth`
        entries per stage), `d` per stage, and the resolution `r` ([size] or size; also
        `image_size`)."""
        try:
            ks, es, ds = list(spec["ks"]), list(spec["e"]), list(spec["d"])
            size = spec.get("r", spec.get("image_size", self.input_hw))
            hw = int(size[0] if isinstance(size, list) else size)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise LatkitError(f"not a once-for-all subnet (ks, e, d, r): bad field {exc}") from None
        space = self.at_resolution(hw)
        per_stage = max(stage.blocks for stage in self.stages)
        if len(ds) != len(self.stages) or len(ks) != len(es) or len(ks) < per_stage * len(ds):
            raise LatkitError(
                f"once-for-all subnet has {len(ds)} depths and {len(ks)} blocks, space "
                f"{self.name} has {len(self.stages)} stages of up to {per_stage} blocks"
            )
        arch, layers = [], iter(space.layers())
        for s, (stage, depth) in enumerate(zip(self.stages, ds)):
            if not (stage.min_blocks or stage.blocks) <= depth <= stage.blocks:
                raise LatkitError(f"once-for-all subnet: depth {depth} of stage {s} is not allowed")
            for block in range(stage.blocks):
                layer = next(layers)
                if block >= depth:
                    arch.append(_identity_index(layer))
                    continue
                i = s * per_stage + block
                wanted = (int(ks[i]), float(es[i]))
                found = [
                    j
                    for j, op in enumerate(layer.candidates)
                    if op.type != "zero" and (op.kernel, op.expand) == wanted
                ]
                if not found:
                    raise LatkitError(
                        f"once-for-all subnet: kernel {ks[i]}, expand {es[i]} is not a candidate "
                        f"of {self.name}"
                    )
                arch.append(found[0])
        return space.network(arch, batch=batch, name=name)

    # --- files ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        stages = []
        for s in self.stages:
            stage: dict[str, Any] = {"width": s.width, "blocks": s.blocks, "stride": s.stride}
            if s.act != self.act:
                stage["act"] = s.act
            if s.se:
                stage["se"] = True
            if s.min_blocks is not None:
                stage["min_blocks"] = s.min_blocks
            stages.append(stage)
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_hw": self.input_hw,
            "in_channels": self.in_channels,
            "act": self.act,
            "block": self.block,
            "stem": {"channels": self.stem_channels, "stride": self.stem_stride},
        }
        if self.stem_act != self.act:
            out["stem"]["act"] = self.stem_act
        if self.resolutions:
            out["resolutions"] = list(self.resolutions)
        if self.first_block_channels is not None:
            out["first_block"] = {"channels": self.first_block_channels}
            if self.first_block_act != self.act:
                out["first_block"]["act"] = self.first_block_act
            if self.first_block_skip:
                out["first_block"]["skip"] = True
        out["stages"] = stages
        out["candidates"] = [c.to_yaml() for c in self.candidates]
        head: dict[str, Any] = {"feature_mix": self.feature_mix_channels}
        if self.final_expand_channels is not None:
            head["final_expand"] = self.final_expand_channels
        if self.head_act != self.act:
            head["act"] = self.head_act
        out["head"] = head | {"classes": self.num_classes}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "space") -> SearchSpace:
        """Read the YAML layout of `latkit/spaces/*.yaml` (what `to_dict` writes)."""
        try:
            act = _space_act(data.get("act", "relu6"))
            first = data.get("first_block")
            head = data["head"]
            block = str(data.get("block", "mbconv"))
            if block not in BLOCK_TYPES:
                raise ValueError(f"block {block!r} is not one of {', '.join(sorted(BLOCK_TYPES))}")
            space = cls(
                name=str(data["name"]),
                description=str(data.get("description", "")),
                input_hw=int(data["input_hw"]),
                in_channels=int(data.get("in_channels", 3)),
                resolutions=_resolutions(data.get("resolutions")),
                act=act,
                block=block,
                stem_channels=int(data["stem"]["channels"]),
                stem_stride=int(data["stem"].get("stride", 2)),
                stem_act=_space_act(data["stem"].get("act", act)),
                first_block_channels=None if first is None else int(first["channels"]),
                first_block_act=_space_act((first or {}).get("act", act)),
                first_block_skip=bool((first or {}).get("skip", False)),
                stages=tuple(
                    Stage(
                        int(s["width"]),
                        int(s["blocks"]),
                        int(s["stride"]),
                        act=_space_act(s.get("act", act)),
                        se=bool(s.get("se", False)),
                        min_blocks=None if s.get("min_blocks") is None else int(s["min_blocks"]),
                    )
                    for s in data["stages"]
                ),
                candidates=_candidates(data.get("candidates", {})),
                feature_mix_channels=int(head["feature_mix"]),
                final_expand_channels=(
                    None if head.get("final_expand") is None else int(head["final_expand"])
                ),
                head_act=_space_act(head.get("act", act)),
                num_classes=int(head["classes"]),
            )
            space.layers()
        except KeyError as exc:
            raise LatkitError(f"{source}: missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError, AttributeError, LatkitError) as exc:
            raise LatkitError(f"{source}: bad value ({exc})") from exc
        if not space.stages:
            raise LatkitError(f"{source}: a space needs at least one stage")
        return space


def _identity_index(layer: Layer) -> int:
    for i, op in enumerate(layer.candidates):
        if op.type == "zero":
            return i
    raise LatkitError(f"layer {layer.index} has no identity candidate")


def _space_act(value: Any) -> str:
    act = _ACT_NAMES.get(str(value))
    if act not in ACTS:
        raise ValueError(f"act {value!r} is not one of {', '.join(ACTS)}")
    return act


def _resolutions(value: Any) -> tuple[int, ...]:
    """A list of input sizes, or {min, max, step} (once-for-all's elastic resolution)."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(range(int(value["min"]), int(value["max"]) + 1, int(value.get("step", 4))))
    return tuple(int(v) for v in value)


def _candidates(value: Any) -> tuple[Candidate, ...]:
    """Either {kernels, expands, zero} (every kernel x expand, then `zero`: ProxylessNAS), or a
    list whose entries are {kernel, expand, groups} or `zero` / `skip`, in index order."""
    if isinstance(value, dict):
        out = [
            Candidate(int(k), float(e))
            for k in value.get("kernels", (3, 5, 7))
            for e in value.get("expands", (3, 6))
        ]
        if value.get("zero", True):
            out.append(Candidate(identity="zero"))
        return tuple(out)
    out = []
    for entry in value:
        if isinstance(entry, str):
            if entry not in IDENTITIES:
                raise ValueError(f"candidate {entry!r} is not one of {', '.join(IDENTITIES)}")
            out.append(Candidate(identity=entry))
        else:
            unknown = set(entry) - {"kernel", "expand", "groups"}
            if unknown:
                raise ValueError(f"candidate field(s) {', '.join(sorted(unknown))}")
            out.append(
                Candidate(
                    int(entry.get("kernel", 3)),
                    float(entry.get("expand", 1)),
                    int(entry.get("groups", 1)),
                )
            )
    if not out:
        raise ValueError("a space needs at least one candidate")
    return tuple(out)


def _builtin_files() -> dict[str, Any]:
    folder = resources.files("latkit.spaces")
    return {p.name.removesuffix(".yaml"): p for p in folder.iterdir() if p.name.endswith(".yaml")}


def builtin_spaces() -> dict[str, SearchSpace]:
    """Built-in spaces by name, read from the YAML files shipped in `latkit/spaces/`."""
    spaces = {}
    for name, path in sorted(_builtin_files().items()):
        spaces[name] = SearchSpace.from_dict(yaml.safe_load(path.read_text()), source=name)
    return spaces


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a YAML file in the same layout."""
    builtins = builtin_spaces()
    if str(name_or_path) in builtins:
        return builtins[str(name_or_path)]
    path = Path(name_or_path)
    if not path.exists():
        raise LatkitError(
            f"space {name_or_path!r} is neither a built-in ({', '.join(builtins)}) nor a file"
        )
    data = read_yaml(path, "space file")
    if not isinstance(data, dict):
        raise LatkitError(f"{path}: a space file must be a YAML mapping")
    return SearchSpace.from_dict(data, source=str(path))


#: the space once-for-all subnet choices (`ks`, `e`, `d`, `r`) refer to unless told otherwise
OFA_SPACE = "ofa-mbv3"


def load_arch(
    path: str | Path,
    batch: int = 1,
    space: SearchSpace | str | None = None,
    input_hw: int | None = None,
) -> Network:
    """A network from a file: ProxylessNAS `net.config`, once-for-all MobileNetV3 config, or
    once-for-all subnet choices (`{"ks": [...], "e": [...], "d": [...], "r": [224]}`, read in
    `space`, by default the built-in `ofa-mbv3`). `input_hw` overrides a config's input size."""
    path = Path(path)
    config = read_json(path, "architecture")
    try:
        if isinstance(config, dict) and {"ks", "e", "d"} <= set(config):
            chosen = load_space(space or OFA_SPACE) if not isinstance(space, SearchSpace) else space
            if input_hw is not None:
                config = {**config, "r": [input_hw]}
            return chosen.ofa_network(config, batch=batch, name=path.stem)
        if not isinstance(config, dict):
            raise LatkitError("an architecture file holds one JSON object")
        return Network.from_config(config, input_hw=input_hw, batch=batch, name=path.stem)
    except LatkitError as exc:
        raise LatkitError(f"{path}: {exc}") from None
