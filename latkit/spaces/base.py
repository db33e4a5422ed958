"""What every space family shares: layers of candidates, whole networks, and `SearchSpace`.

A `SearchSpace` is a stem, an optional fixed first block, stages of searchable layers and a head.
Each searchable layer offers the space's candidates: blocks (kernel x expand x groups, of the
space's block type) and, where the space has them, an identity (ProxylessNAS's `zero`, FBNet's
`skip`, once-for-all's elastic depth). An architecture is one candidate index per searchable
layer, at one of the space's input resolutions; a `Network` is the resulting ordered list of op
specs. What is particular to a family lives in its own module (`proxyless`, `fbnet`, `ofa`)
and the file layout in `layout`; this module builds the structure and calls on them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from latkit.errors import LatkitError
from latkit.files import read_json
from latkit.ops import OpSpec
from latkit.spaces import fbnet, ofa, proxyless
from latkit.spaces.layout import Candidate, Stage, space_dict, space_fields


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
    if op.type == "irf":
        return fbnet.block_name(op)
    return proxyless.block_name(op)


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
        return proxyless.network_config(self.ops)

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
        return cls(tuple(proxyless.config_ops(config, input_hw, batch)), name)

    @classmethod
    def load(cls, path: str | Path, batch: int = 1) -> Network:
        path = Path(path)
        config = read_json(path, "architecture")
        try:
            return cls.from_config(config, batch=batch, name=path.stem)
        except LatkitError as exc:
            raise LatkitError(f"{path}: {exc}") from exc


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
        """A layer's candidate ops, in the space's candidate order: `zero` only where the layer
        keeps its shape, `skip` everywhere (`fbnet.skip_op`); a layer past an elastic stage's
        `min_blocks` (`optional`) also offers the identity."""
        keeps = stride == 1 and cin == stage.width
        identity = OpSpec("zero", hw, cin, cin, skip=True, batch=batch) if keeps else None
        ops: list[OpSpec] = []
        for c in self.candidates:
            if c.identity == "zero" and identity is not None:
                ops.append(identity)
            elif c.identity == "skip":
                ops.append(fbnet.skip_op(identity, hw, cin, stage.width, stride, stage.act, batch))
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
                        se_style=stage.se_style,
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
            else:
                arch += ofa.sample_elastic(rng, stage, stage_layers)
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
        """The network of once-for-all subnet choices (`ofa.subnet_arch`): `ks` and `e` per
        block (`max depth` entries per stage), `d` per stage, and the resolution `r`."""
        hw, arch = ofa.subnet_arch(self, spec)
        return self.at_resolution(hw).network(arch, batch=batch, name=name)

    # --- files ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The YAML layout of `latkit/spaces/*.yaml` (`layout.space_dict`)."""
        return space_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "space") -> SearchSpace:
        """Read the YAML layout of `latkit/spaces/*.yaml` (what `to_dict` writes)."""
        try:
            space = cls(**space_fields(data))
            space.layers()
        except KeyError as exc:
            raise LatkitError(f"{source}: missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError, AttributeError, LatkitError) as exc:
            raise LatkitError(f"{source}: bad value ({exc})") from exc
        if not space.stages:
            raise LatkitError(f"{source}: a space needs at least one stage")
        return space
