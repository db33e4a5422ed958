"""The search's defaults, in one place: what `SearchConfig`, `latkit search` and `latkit
quickstart` start from when not told otherwise.

They live here, below the workflows and the command line, so that every layer may read them
(`latkit.workflows.defaults` hands them on with the command line's limits), and this module
imports nothing, so that reading them does not wait for torch.
"""

from __future__ import annotations

#: search epochs (weights and architecture), of which the first `WARMUP_EPOCHS` train weights only
EPOCHS = 8
WARMUP_EPOCHS = 4
#: the target-seeking loss (`latkit.search.losses`); ProxylessNAS's own are `add-linear` and
#: `mul-log`
LOSS = "lagrangian"
#: ProxylessNAS moves α with lr 1e-3 over ~10^5 ImageNet arch steps; digits gives ~10^2, so
#: searches default to a larger step.
ARCH_LR = 0.03
#: how an architecture step is taken (`gradient`: binary gates; `reinforce`)
STRATEGY = "gradient"
#: the binary-gate mode of the gradient strategy
MODE = "two-path"
#: the (global) training batch: digits on a CPU (ImageNet used 256)
BATCH_SIZE = 32
