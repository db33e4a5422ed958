"""The YAML layout of a space file (`latkit/spaces/*.yaml`): its stages, its candidates, its
input sizes and how it spells activations.

Kept apart from `SearchSpace` so that reading and writing a file is one room and the structure
built from it another: `space_fields` turns a file's mapping into the constructor's fields,
`space_dict` writes them back, and neither needs the space's logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latkit.ops import ACTS, BLOCK_TYPES

if TYPE_CHECKING:
    from latkit.spaces.base import SearchSpace

#: activation names as files spell them (ProxylessNAS / once-for-all configs, space YAML)
ACT_NAMES = {
    "relu6": "relu6",
    "relu": "relu",
    "h_swish": "hswish",
    "hswish": "hswish",
    "swish": "swish",
}
#: the candidate entries that are not blocks: `zero` is the identity where the layer keeps its
#: shape (and absent elsewhere); `skip` is that identity or, where the shape changes, a 1x1 conv
IDENTITIES = ("zero", "skip")


@dataclass(frozen=True)
class Stage:
    """`blocks` layers of `width` channels; the first has `stride`. Layers past `min_blocks` may
    be the identity (elastic depth); `act`, `se` and `se_style` apply to every block of the
    stage."""

    width: int
    blocks: int
    stride: int
    act: str = "relu6"
    se: bool = False
    min_blocks: int | None = None
    se_style: str = "mbv3"

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
        out: dict[str, Any] = {"kernel": self.kernel, "expand": plain_number(self.expand)}
        if self.groups != 1:
            out["groups"] = self.groups
        return out


def plain_number(value: float) -> int | float:
    """`6` rather than `6.0` where a ratio is whole, as the published files write it."""
    return int(value) if float(value).is_integer() else float(value)


def space_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The `SearchSpace` fields of a file's mapping. Raises KeyError for a missing field and
    ValueError/TypeError for a bad one; `SearchSpace.from_dict` says which file."""
    act = space_act(data.get("act", "relu6"))
    first = data.get("first_block")
    head = data["head"]
    block = str(data.get("block", "mbconv"))
    if block not in BLOCK_TYPES:
        raise ValueError(f"block {block!r} is not one of {', '.join(sorted(BLOCK_TYPES))}")
    return {
        "name": str(data["name"]),
        "description": str(data.get("description", "")),
        "input_hw": int(data["input_hw"]),
        "in_channels": int(data.get("in_channels", 3)),
        "resolutions": resolutions(data.get("resolutions")),
        "act": act,
        "block": block,
        "stem_channels": int(data["stem"]["channels"]),
        "stem_stride": int(data["stem"].get("stride", 2)),
        "stem_act": space_act(data["stem"].get("act", act)),
        "first_block_channels": None if first is None else int(first["channels"]),
        "first_block_act": space_act((first or {}).get("act", act)),
        "first_block_skip": bool((first or {}).get("skip", False)),
        "stages": tuple(_stage(s, act) for s in data["stages"]),
        "candidates": candidates(data.get("candidates", {})),
        "feature_mix_channels": int(head["feature_mix"]),
        "final_expand_channels": (
            None if head.get("final_expand") is None else int(head["final_expand"])
        ),
        "head_act": space_act(head.get("act", act)),
        "num_classes": int(head["classes"]),
    }


def _stage(s: dict[str, Any], act: str) -> Stage:
    return Stage(
        int(s["width"]),
        int(s["blocks"]),
        int(s["stride"]),
        act=space_act(s.get("act", act)),
        se=bool(s.get("se", False)),
        min_blocks=None if s.get("min_blocks") is None else int(s["min_blocks"]),
        se_style=str(s.get("se_style", "mbv3")),
    )


def space_dict(space: SearchSpace) -> dict[str, Any]:
    """The file's mapping of `space`: what `space_fields` reads back, with the fields that
    repeat the space's `act` left out."""
    out: dict[str, Any] = {
        "name": space.name,
        "description": space.description,
        "input_hw": space.input_hw,
        "in_channels": space.in_channels,
        "act": space.act,
        "block": space.block,
        "stem": {"channels": space.stem_channels, "stride": space.stem_stride},
    }
    if space.stem_act != space.act:
        out["stem"]["act"] = space.stem_act
    if space.resolutions:
        out["resolutions"] = list(space.resolutions)
    if space.first_block_channels is not None:
        out["first_block"] = {"channels": space.first_block_channels}
        if space.first_block_act != space.act:
            out["first_block"]["act"] = space.first_block_act
        if space.first_block_skip:
            out["first_block"]["skip"] = True
    out["stages"] = [_stage_dict(s, space.act) for s in space.stages]
    out["candidates"] = [c.to_yaml() for c in space.candidates]
    head: dict[str, Any] = {"feature_mix": space.feature_mix_channels}
    if space.final_expand_channels is not None:
        head["final_expand"] = space.final_expand_channels
    if space.head_act != space.act:
        head["act"] = space.head_act
    out["head"] = head | {"classes": space.num_classes}
    return out


def _stage_dict(s: Stage, act: str) -> dict[str, Any]:
    stage: dict[str, Any] = {"width": s.width, "blocks": s.blocks, "stride": s.stride}
    if s.act != act:
        stage["act"] = s.act
    if s.se:
        stage["se"] = True
    if s.se_style != "mbv3":
        stage["se_style"] = s.se_style
    if s.min_blocks is not None:
        stage["min_blocks"] = s.min_blocks
    return stage


def space_act(value: Any) -> str:
    act = ACT_NAMES.get(str(value))
    if act not in ACTS:
        raise ValueError(f"act {value!r} is not one of {', '.join(ACTS)}")
    return act


def resolutions(value: Any) -> tuple[int, ...]:
    """A list of input sizes, or {min, max, step} (once-for-all's elastic resolution)."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(range(int(value["min"]), int(value["max"]) + 1, int(value.get("step", 4))))
    return tuple(int(v) for v in value)


def candidates(value: Any) -> tuple[Candidate, ...]:
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
    out = [_candidate(entry) for entry in value]
    if not out:
        raise ValueError("a space needs at least one candidate")
    return tuple(out)


def _candidate(entry: Any) -> Candidate:
    if isinstance(entry, str):
        if entry not in IDENTITIES:
            raise ValueError(f"candidate {entry!r} is not one of {', '.join(IDENTITIES)}")
        return Candidate(identity=entry)
    unknown = set(entry) - {"kernel", "expand", "groups"}
    if unknown:
        raise ValueError(f"candidate field(s) {', '.join(sorted(unknown))}")
    return Candidate(
        int(entry.get("kernel", 3)),
        float(entry.get("expand", 1)),
        int(entry.get("groups", 1)),
    )
