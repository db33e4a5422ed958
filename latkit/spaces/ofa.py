"""once-for-all's family: elastic depth and resolution, and its subnet choices.

once-for-all (`ofa-mbv3`) samples a subnet by drawing each stage's depth and then each block;
the layers past the depth are the identity. It names a subnet by its choices, `ks` and `e` per
block (the stage's largest depth of entries per stage), `d` per stage and the resolution `r`;
`subnet_arch` turns those into the candidate indices of a `SearchSpace`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from latkit.errors import LatkitError

if TYPE_CHECKING:
    from latkit.spaces.base import Layer, SearchSpace
    from latkit.spaces.layout import Stage

#: the space once-for-all subnet choices (`ks`, `e`, `d`, `r`) refer to unless told otherwise
OFA_SPACE = "ofa-mbv3"


def is_subnet(config: Any) -> bool:
    """Whether an architecture file holds once-for-all subnet choices (not a net.config)."""
    return isinstance(config, dict) and {"ks", "e", "d"} <= set(config)


def identity_index(layer: Layer) -> int:
    """The index of the layer's identity candidate (what a layer past the depth is)."""
    for i, op in enumerate(layer.candidates):
        if op.type == "zero":
            return i
    raise LatkitError(f"layer {layer.index} has no identity candidate")


def sample_elastic(rng: random.Random, stage: Stage, layers: Sequence[Layer]) -> list[int]:
    """A stage of elastic depth as once-for-all samples it: the depth first (uniformly), then
    a block for each layer within it; the layers past it are the identity."""
    depth = rng.randint(stage.min_blocks, stage.blocks)
    arch = []
    for block, layer in enumerate(layers):
        blocks = [i for i, op in enumerate(layer.candidates) if op.type != "zero"]
        arch.append(rng.choice(blocks) if block < depth else identity_index(layer))
    return arch


def subnet_arch(space: SearchSpace, spec: dict[str, Any]) -> tuple[int, tuple[int, ...]]:
    """(input size, candidate indices) of once-for-all subnet choices: `ks` and `e` per block
    (`max depth` entries per stage), `d` per stage, and the resolution `r` ([size] or size;
    also `image_size`)."""
    try:
        ks, es, ds = list(spec["ks"]), list(spec["e"]), list(spec["d"])
        size = spec.get("r", spec.get("image_size", space.input_hw))
        hw = int(size[0] if isinstance(size, list) else size)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise LatkitError(f"not a once-for-all subnet (ks, e, d, r): bad field {exc}") from None
    fixed = space.at_resolution(hw)
    per_stage = max(stage.blocks for stage in space.stages)
    if len(ds) != len(space.stages) or len(ks) != len(es) or len(ks) < per_stage * len(ds):
        raise LatkitError(
            f"once-for-all subnet has {len(ds)} depths and {len(ks)} blocks, space "
            f"{space.name} has {len(space.stages)} stages of up to {per_stage} blocks"
        )
    arch, layers = [], iter(fixed.layers())
    for s, (stage, depth) in enumerate(zip(space.stages, ds)):
        if not (stage.min_blocks or stage.blocks) <= depth <= stage.blocks:
            raise LatkitError(f"once-for-all subnet: depth {depth} of stage {s} is not allowed")
        for block in range(stage.blocks):
            layer = next(layers)
            if block >= depth:
                arch.append(identity_index(layer))
                continue
            i = s * per_stage + block
            arch.append(_block_index(layer, ks[i], es[i], space.name))
    return hw, tuple(arch)


def _block_index(layer: Layer, kernel: Any, expand: Any, space: str) -> int:
    """The layer's block of `kernel` and `expand` (as the subnet file writes them)."""
    wanted = (int(kernel), float(expand))
    found = [
        j
        for j, op in enumerate(layer.candidates)
        if op.type != "zero" and (op.kernel, op.expand) == wanted
    ]
    if not found:
        raise LatkitError(
            f"once-for-all subnet: kernel {kernel}, expand {expand} is not a candidate of {space}"
        )
    return found[0]
