"""Search spaces and whole networks, as plain data.

A `SearchSpace` is a stem, a fixed first block, stages of searchable MBConv layers and a head. Each
searchable layer offers the same candidates (kernel x expand, plus `zero` where the layer has an
identity skip). An architecture is one candidate index per searchable layer; a `Network` is the
resulting ordered list of op specs and converts to and from ProxylessNAS's `net.config` JSON.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from latkit.errors import LatkitError
from latkit.files import read_json, read_yaml
from latkit.ops import OpSpec


@dataclass(frozen=True)
class Stage:
    width: int
    blocks: int
    stride: int


@dataclass(frozen=True)
class Layer:
    """One searchable position: its candidates, in the order architecture indices refer to."""

    index: int
    candidates: tuple[OpSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(candidate_name(op) for op in self.candidates)


def candidate_name(op: OpSpec) -> str:
    """ProxylessNAS's names: `3x3_MBConv6`, `zero`."""
    if op.type == "zero":
        return "zero"
    return f"{op.kernel}x{op.kernel}_MBConv{op.expand:g}"


@dataclass(frozen=True)
class Network:
    """A whole network: its ops in execution order. Latency-wise it is the sum of its ops."""

    ops: tuple[OpSpec, ...]
    name: str = "network"

    def to_config(self) -> dict[str, Any]:
        """ProxylessNAS `net.config` JSON, so published tooling can read latkit's architectures."""
        stem, *middle, mix, logits = self.ops
        if stem.type != "conv" or mix.type != "conv" or logits.type != "linear":
            raise LatkitError("a net.config needs stem conv, blocks, feature-mix conv and logits")
        blocks = []
        for op in middle:
            if op.type == "zero":
                conv: dict[str, Any] = {"name": "ZeroLayer", "stride": op.stride}
            elif op.type == "mbconv":
                conv = {
                    "name": "MBInvertedConvLayer",
                    "in_channels": op.cin,
                    "out_channels": op.cout,
                    "kernel_size": op.kernel,
                    "stride": op.stride,
                    "expand_ratio": int(op.expand) if op.expand == int(op.expand) else op.expand,
                }
            else:
                raise LatkitError(f"op type {op.type!r} cannot be a block in a net.config")
            shortcut = (
                {"name": "IdentityLayer", "in_channels": op.cin, "out_channels": op.cout}
                if op.skip
                else None
            )
            blocks.append(
                {
                    "name": "MobileInvertedResidualBlock",
                    "mobile_inverted_conv": conv,
                    "shortcut": shortcut,
                }
            )
        return {
            "name": "ProxylessNASNets",
            "input_size": stem.input_hw,
            "first_conv": {
                "name": "ConvLayer",
                "kernel_size": stem.kernel,
                "stride": stem.stride,
                "in_channels": stem.cin,
                "out_channels": stem.cout,
                "use_bn": True,
                "act_func": stem.act,
            },
            "blocks": blocks,
            "feature_mix_layer": {
                "name": "ConvLayer",
                "kernel_size": mix.kernel,
                "stride": 1,
                "in_channels": mix.cin,
                "out_channels": mix.cout,
                "use_bn": True,
                "act_func": mix.act,
            },
            "classifier": {
                "name": "LinearLayer",
                "in_features": logits.cin,
                "out_features": logits.cout,
                "bias": True,
            },
        }

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        input_hw: int | None = None,
        batch: int = 1,
        name: str = "network",
    ) -> Network:
        """Read a ProxylessNAS `net.config` (the published ones omit the input size: 224)."""
        try:
            hw = int(input_hw or config.get("input_size", 224))
            first = config["first_conv"]
            stem = OpSpec(
                "conv",
                hw,
                first["in_channels"],
                first["out_channels"],
                stride=first["stride"],
                kernel=first["kernel_size"],
                batch=batch,
            )
            ops = [stem]
            hw, channels = stem.output_hw, stem.cout
            for block in config["blocks"]:
                conv, skip = block["mobile_inverted_conv"], block["shortcut"] is not None
                if conv["name"] == "ZeroLayer":
                    op = OpSpec(
                        "zero",
                        hw,
                        channels,
                        channels,
                        stride=conv["stride"],
                        skip=skip,
                        batch=batch,
                    )
                else:
                    op = OpSpec(
                        "mbconv",
                        hw,
                        conv["in_channels"],
                        conv["out_channels"],
                        stride=conv["stride"],
                        kernel=conv["kernel_size"],
                        expand=float(conv["expand_ratio"]),
                        skip=skip,
                        batch=batch,
                    )
                ops.append(op)
                hw, channels = op.output_hw, op.cout
            mix = config["feature_mix_layer"]
            ops.append(
                OpSpec(
                    "conv",
                    hw,
                    mix["in_channels"],
                    mix["out_channels"],
                    kernel=mix["kernel_size"],
                    batch=batch,
                )
            )
            classifier = config["classifier"]
            ops.append(
                OpSpec(
                    "linear", hw, classifier["in_features"], classifier["out_features"], batch=batch
                )
            )
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


def _check_chain(ops: Sequence[OpSpec]) -> None:
    for prev, op in zip(ops, ops[1:]):
        if prev.cout != op.cin or prev.output_hw != op.input_hw:
            raise LatkitError(
                f"ops do not chain: {prev.key} gives {prev.output_hw}x{prev.output_hw}x{prev.cout}"
                f" but {op.key} takes {op.input_hw}x{op.input_hw}x{op.cin}"
            )


@dataclass(frozen=True)
class SearchSpace:
    """A ProxylessNAS-style space. Everything is derived from these fields."""

    name: str
    input_hw: int
    stem_channels: int
    stem_stride: int
    first_block_channels: int
    stages: tuple[Stage, ...]
    feature_mix_channels: int
    num_classes: int
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[float, ...] = (3.0, 6.0)
    zero: bool = True
    in_channels: int = 3
    description: str = ""

    # --- structure ------------------------------------------------------------------------------

    def _fixed_head(self, batch: int) -> tuple[OpSpec, OpSpec]:
        stem = OpSpec(
            "conv",
            self.input_hw,
            self.in_channels,
            self.stem_channels,
            stride=self.stem_stride,
            kernel=3,
            batch=batch,
        )
        first = OpSpec(
            "mbconv",
            stem.output_hw,
            self.stem_channels,
            self.first_block_channels,
            kernel=3,
            expand=1.0,
            batch=batch,
        )
        return stem, first

    def layers(self, batch: int = 1) -> tuple[Layer, ...]:
        """The searchable layers, in order, each with its candidate ops."""
        _, first = self._fixed_head(batch)
        hw, channels = first.output_hw, first.cout
        layers: list[Layer] = []
        for stage in self.stages:
            for block in range(stage.blocks):
                stride = stage.stride if block == 0 else 1
                skip = stride == 1 and channels == stage.width
                candidates = [
                    OpSpec(
                        "mbconv",
                        hw,
                        channels,
                        stage.width,
                        stride=stride,
                        kernel=k,
                        expand=float(e),
                        skip=skip,
                        batch=batch,
                    )
                    for k in self.kernels
                    for e in self.expands
                ]
                if self.zero and skip:
                    candidates.append(
                        OpSpec("zero", hw, channels, channels, skip=True, batch=batch)
                    )
                layers.append(Layer(len(layers), tuple(candidates)))
                hw, channels = candidates[0].output_hw, stage.width
        return tuple(layers)

    def fixed_ops(self, batch: int = 1) -> tuple[tuple[OpSpec, ...], tuple[OpSpec, ...]]:
        """(ops before the searchable layers, ops after them)."""
        stem, first = self._fixed_head(batch)
        last = self.layers(batch)[-1].candidates[0]
        mix = OpSpec(
            "conv", last.output_hw, last.cout, self.feature_mix_channels, kernel=1, batch=batch
        )
        logits = OpSpec("linear", mix.output_hw, mix.cout, self.num_classes, batch=batch)
        return (stem, first), (mix, logits)

    def distinct_ops(self, batch: int = 1) -> list[OpSpec]:
        """Every op worth timing, once: fixed ops and all non-zero candidates (zero costs 0)."""
        head, tail = self.fixed_ops(batch)
        ops = list(head)
        for layer in self.layers(batch):
            ops.extend(op for op in layer.candidates if op.type != "zero")
        ops.extend(tail)
        return list(dict.fromkeys(ops))

    # --- architectures --------------------------------------------------------------------------

    def network(self, arch: Sequence[int], batch: int = 1, name: str = "network") -> Network:
        layers = self.layers(batch)
        if len(arch) != len(layers):
            raise LatkitError(f"space {self.name} has {len(layers)} layers, arch has {len(arch)}")
        head, tail = self.fixed_ops(batch)
        chosen = []
        for layer, index in zip(layers, arch):
            if not 0 <= index < len(layer.candidates):
                raise LatkitError(f"layer {layer.index} has no candidate {index}")
            chosen.append(layer.candidates[index])
        return Network((*head, *chosen, *tail), name)

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.randrange(len(layer.candidates)) for layer in self.layers())

    def sample_networks(self, n: int, seed: int = 0) -> list[tuple[tuple[int, ...], Network]]:
        """`n` distinct random architectures, reproducible from `seed`."""
        rng = random.Random(seed)
        seen: dict[tuple[int, ...], Network] = {}
        attempts = 0
        while len(seen) < n and attempts < 100 * n:
            arch = self.sample(rng)
            seen.setdefault(arch, self.network(arch, name=f"{self.name}-{len(seen)}"))
            attempts += 1
        return list(seen.items())

    def arch_of(self, network: Network) -> tuple[int, ...]:
        """The candidate indices that produce `network` (batch ignored)."""
        layers = self.layers()
        head, tail = self.fixed_ops()
        middle = [
            op.replace(batch=1) for op in network.ops[len(head) : len(network.ops) - len(tail)]
        ]
        if len(middle) != len(layers):
            raise LatkitError(f"network {network.name} does not fit space {self.name}")
        try:
            return tuple(layer.candidates.index(op) for layer, op in zip(layers, middle))
        except ValueError as exc:
            raise LatkitError(f"network {network.name} uses an op outside {self.name}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_hw": self.input_hw,
            "in_channels": self.in_channels,
            "stem": {"channels": self.stem_channels, "stride": self.stem_stride},
            "first_block": {"channels": self.first_block_channels},
            "stages": [
                {"width": s.width, "blocks": s.blocks, "stride": s.stride} for s in self.stages
            ],
            "candidates": {
                "kernels": list(self.kernels),
                "expands": list(self.expands),
                "zero": self.zero,
            },
            "head": {"feature_mix": self.feature_mix_channels, "classes": self.num_classes},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "space") -> SearchSpace:
        """Read the YAML layout written by `to_dict` (see `latkit/spaces/*.yaml`)."""
        try:
            candidates = data.get("candidates", {})
            return cls(
                name=str(data["name"]),
                description=str(data.get("description", "")),
                input_hw=int(data["input_hw"]),
                in_channels=int(data.get("in_channels", 3)),
                stem_channels=int(data["stem"]["channels"]),
                stem_stride=int(data["stem"].get("stride", 2)),
                first_block_channels=int(data["first_block"]["channels"]),
                stages=tuple(
                    Stage(int(s["width"]), int(s["blocks"]), int(s["stride"]))
                    for s in data["stages"]
                ),
                kernels=tuple(int(k) for k in candidates.get("kernels", (3, 5, 7))),
                expands=tuple(float(e) for e in candidates.get("expands", (3, 6))),
                zero=bool(candidates.get("zero", True)),
                feature_mix_channels=int(data["head"]["feature_mix"]),
                num_classes=int(data["head"]["classes"]),
            )
        except KeyError as exc:
            raise LatkitError(f"{source}: missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise LatkitError(f"{source}: bad value ({exc})") from exc


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
