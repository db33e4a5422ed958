"""A short data-parallel search that records, after every step, what each rank holds.

Run by tests/test_search_distributed.py through torchrun's launcher
(`python -m torch.distributed.run --standalone --nproc-per-node N tests/search_ranks.py OUT`), and
in-process as the single-process reference. Each rank saves OUT/rank<R>.pt: α and a few weight
tensors after every step, and the number of images its first forward saw.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from conftest import MacsPredictor

from latkit.search.datasets import Dataset, Split, load_dataset
from latkit.search.distributed import training_session
from latkit.search.latency import LatencyTable
from latkit.search.supernet import SuperNet
from latkit.search.trainer import SearchConfig, SearchTrainer
from latkit.spaces import load_space

SPACE = load_space("proxyless-tiny")
GLOBAL_BATCH = 16
STEPS = 6


def record_search(out: Path) -> None:
    digits = load_dataset("digits", SPACE.input_hw, seed=0)
    data = Dataset(
        "digits",
        Split(digits.train.x[: GLOBAL_BATCH * STEPS], digits.train.y[: GLOBAL_BATCH * STEPS]),
        Split(digits.val.x[:64], digits.val.y[:64]),
        digits.test,
        10,
    )
    config = SearchConfig(
        target_ms=0.1,
        epochs=1,
        warmup_epochs=0,
        batch_size=GLOBAL_BATCH,
        arch_every=1,
        arch_lr=0.05,
        loss="add-linear",
        seed=0,
    )
    with training_session("cpu") as session:
        torch.manual_seed(0)
        net = session.group.sync_batch_norm(SuperNet(SPACE, "two-path", seed=0))
        table = LatencyTable.from_predictor(MacsPredictor(), SPACE)
        trainer = SearchTrainer(net, table, data, config, group=session.group)
        seen: list[int] = []
        net.head.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
        alphas, weights = [], []

        def after_step() -> None:
            alphas.append([a.detach().clone() for a in net.arch_parameters()])
            weights.append([p.detach().clone() for p in list(net.weight_parameters())[:6]])

        trainer.run(on_step=after_step)
        torch.save(
            {
                "world_size": session.group.world_size,
                "alphas": alphas,
                "weights": weights,
                "first_batch": seen[0],
                "history": [r.to_json() for r in trainer.history],
            },
            out / f"rank{session.group.rank}.pt",
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    record_search(Path(sys.argv[1]))
