"""Hardware-aware search: ProxylessNAS's binary-gate supernet with the device's F in the loss.

The parts: the mixed op (`mixed_op`), the supernet (`supernet`), the expected-latency table
(`latency`), the losses (`losses`), the trainers (`trainer`, `reinforce`), the datasets
(`datasets`) and the architecture export (`export`). The whole job, with the device in the loop,
is `latkit.workflows.search.run_search`.
"""

from latkit.search.trainer import SearchConfig

__all__ = ["SearchConfig"]
