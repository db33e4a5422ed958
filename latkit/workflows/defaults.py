"""The search's defaults that `latkit search --help` shows, apart from the search itself so that
the help (and every other command's start-up) does not wait for torch to import."""

#: ProxylessNAS moves α with lr 1e-3 over ~10^5 ImageNet arch steps; digits gives ~10^2, so
#: searches started from the command line default to a larger step.
ARCH_LR = 0.03
#: the target-seeking loss (`latkit.search.losses`); ProxylessNAS's own are `add-linear` and
#: `mul-log`
LOSS = "lagrangian"
#: the most derive-and-time rounds of the closed loop
ROUNDS = 3
