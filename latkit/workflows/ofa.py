"""latkit's F as once-for-all's efficiency predictor, so its evolutionary search runs under F.

once-for-all's searches ask an efficiency predictor one thing: the cost of a subnet, compared
against a constraint (`efficiency <= constraint`). `ofa.nas.search_algorithm.EvolutionFinder`
calls `get_efficiency(arch_dict)` with `{"ks", "e", "d", "image_size"}` (the samples of
`ofa.nas.accuracy_predictor.MobileNetArchEncoder`), and the tutorial's
`ofa.tutorial.EvolutionFinder` calls `predict_efficiency(spec)` with `{"wid", "ks", "e", "d",
"r": [size]}`. `OFAEfficiency` answers both with F's network latency in ms for the device F was
fitted for, so the constraint is in ms on that device instead of on once-for-all's Note10 table.
The `ofa` package imports torchvision, so nothing here imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from latkit.ops import OpSpec
from latkit.predictors.predictor import NetworkAnswer
from latkit.spaces import OFA_SPACE, Network, SearchSpace, load_space


class NetworkPredictor(Protocol):
    """What the adapter needs of F (a `LatencyPredictor` has it)."""

    meta: dict[str, Any]

    def predict_network(self, ops: Sequence[OpSpec]) -> float: ...

    def network_answer(self, ops: Sequence[OpSpec]) -> NetworkAnswer: ...


class OFAEfficiency:
    """once-for-all's efficiency-predictor interface (`get_efficiency`, `predict_efficiency`),
    answered by F: a subnet's latency in ms on F's device.

    Parameters:
        predictor: the device's F (`latkit.predictors.load_predictor`).
        space: the space the subnet choices refer to (once-for-all's MobileNetV3, `ofa-mbv3`,
            unless told otherwise); its resolutions are the `image_size`s it answers for.
    """

    def __init__(self, predictor: NetworkPredictor, space: SearchSpace | str = OFA_SPACE) -> None:
        self.predictor = predictor
        self.space = load_space(space) if isinstance(space, str) else space
        self.batch = int(predictor.meta.get("batch", 1))

    def network(self, arch_dict: Mapping[str, Any]) -> Network:
        """The network of once-for-all subnet choices: `ks` and `e` per block, `d` per stage,
        and `image_size` (an int) or `r` (`[size]`); a bad one is a `LatkitError`."""
        return self.space.ofa_network(dict(arch_dict), batch=self.batch, name="ofa-subnet")

    def get_efficiency(self, arch_dict: Mapping[str, Any]) -> float:
        """F's latency of the subnet in ms: `ofa.nas`'s `BaseEfficiencyModel.get_efficiency`."""
        return self.predictor.predict_network(self.network(arch_dict).ops)

    def predict_efficiency(self, spec: Mapping[str, Any]) -> float:
        """The same, under the name once-for-all's tutorial (`ofa.tutorial`) calls."""
        return self.get_efficiency(spec)

    def answer(self, arch_dict: Mapping[str, Any]) -> NetworkAnswer:
        """F's latency of the subnet with its 90% interval, for a result worth a second look."""
        return self.predictor.network_answer(self.network(arch_dict).ops)
