"""Search at scale: tensors on the supernet's device, torchrun data parallelism, stop and resume.

The data-parallel test starts real processes through torchrun's launcher (gloo on this CPU); the
meta-device test runs search steps where no tensor has data, so any tensor created on another
device fails; CUDA cases run where a GPU is present.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import MacsPredictor
from search_ranks import record_search

from latkit.errors import LatkitError
from latkit.search.checkpoint import Checkpointer
from latkit.search.datasets import Dataset, Split, load_dataset
from latkit.search.latency import LatencyTable
from latkit.search.losses import AddLinear, MulLog
from latkit.search.placement import Precision, train_device
from latkit.search.reinforce import ReinforceStep
from latkit.search.supernet import SuperNet
from latkit.search.trainer import GradientStep, SearchConfig, SearchTrainer
from latkit.spaces import load_space
from latkit.workflows.search import torch_threads

SPACE = load_space("proxyless-tiny")
ROOT = Path(__file__).resolve().parents[1]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def small_digits(train: int = 96, val: int = 48) -> Dataset:
    digits = load_dataset("digits", SPACE.input_hw, seed=0)
    return Dataset(
        "digits",
        Split(digits.train.x[:train], digits.train.y[:train]),
        Split(digits.val.x[:val], digits.val.y[:val]),
        Split(digits.test.x[:64], digits.test.y[:64]),
        10,
    )


def table() -> LatencyTable:
    return LatencyTable.from_predictor(MacsPredictor(), SPACE)


@pytest.mark.parametrize("device", ["meta", pytest.param("cuda", marks=CUDA)])
def test_search_steps_create_tensors_on_the_supernets_device(device):
    """A weight step and an architecture step, with the F table left on the CPU: gates, gate
    gradients, sampled indices and the latency costs must all follow the supernet."""
    net = SuperNet(SPACE, "two-path", seed=0).to(device)
    x = torch.randn(4, 3, SPACE.input_hw, SPACE.input_hw, device=device)
    y = torch.arange(4, device=device)
    for op in net.mixed:  # paths by hand: sampling reads probabilities, which meta has not
        op.phase, op.active, op.involved = "arch", 1, (1, 0)
        op._involved_alpha = op.alpha.detach()[[1, 0]].clone()
    loss = AddLinear()(F.cross_entropy(net(x), y), table().expected(net.arch_parameters()), 0.1)
    loss.backward()
    for op in net.mixed:
        assert op.alpha.grad is not None and op.alpha.grad.device.type == device
    net.rescale()
    for op in net.mixed:
        op.phase, op.involved = "weights", (op.active,)
    F.cross_entropy(net(x), y).backward()
    assert all(p.grad.device.type == device for p in net.head.parameters())


@pytest.mark.parametrize(
    "device, amp",
    [
        ("cpu", "bf16"),
        pytest.param("cuda", None, marks=CUDA),
        pytest.param("cuda", "bf16", marks=CUDA),
    ],
)
def test_a_search_trains_on_its_device_and_precision(device, amp):
    place = train_device(device)
    net = SuperNet(SPACE, "two-path", seed=0).to(place)
    before = [a.detach().cpu().clone() for a in net.arch_parameters()]
    config = SearchConfig(target_ms=0.1, epochs=1, warmup_epochs=0, batch_size=16, arch_every=2)
    trainer = SearchTrainer(net, table(), small_digits(), config, precision=Precision(place, amp))
    with torch_threads(1):
        history = trainer.run()
    assert history[0].arch_steps == 3 and 0 <= history[0].val_acc <= 1
    assert all(a.device.type == place.type for a in net.arch_parameters())
    assert any(not torch.equal(a.detach().cpu(), b) for a, b in zip(net.arch_parameters(), before))
    assert trainer.state_dict()["net"]["mixed.0.alpha"].device.type == place.type


def test_train_device_and_amp_errors_are_one_line():
    mps = torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert train_device("auto").type == expected
    if not mps:
        with pytest.raises(LatkitError, match="--train-device mps: no usable Apple GPU here"):
            train_device("mps")
    with pytest.raises(LatkitError, match="is not one of cpu, cuda, cuda:N, mps or auto"):
        train_device("tpu")
    with pytest.raises(LatkitError, match="is not one of"):
        train_device("cuda:x")
    with pytest.raises(LatkitError, match="--amp 'int8' is not one of bf16, fp16"):
        Precision(torch.device("cpu"), "int8")
    if not torch.cuda.is_available():
        with pytest.raises(
            LatkitError, match=r"--train-device cuda: no usable CUDA GPU here \(torch"
        ):
            train_device("cuda")
    with pytest.raises(LatkitError, match="its own: use --train-device cuda"):
        train_device("cuda:1", local_rank=0)


def test_two_gloo_processes_keep_identical_alphas_and_match_one_process(tmp_path):
    """Two ranks through torchrun's launcher against the same search in one process, same
    global batch of 16: after every step α is bit-identical on both ranks; after the first
    (deterministic) step, weights and α equal the single-process ones within float rounding."""
    two = tmp_path / "two"
    two.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(ROOT / "tests" / "search_ranks.py"),
            str(two),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    one = tmp_path / "one"
    one.mkdir()
    with torch_threads(1):
        record_search(one)
    rank0, rank1 = (torch.load(two / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(one / "rank0.pt")
    assert (rank0["world_size"], single["world_size"]) == (2, 1)
    assert (rank0["first_batch"], rank1["first_batch"], single["first_batch"]) == (8, 8, 16)
    assert len(rank0["alphas"]) == len(single["alphas"]) == 6
    for step0, step1 in zip(rank0["alphas"], rank1["alphas"]):
        assert all(torch.equal(a, b) for a, b in zip(step0, step1))
    for step0, step1 in zip(rank0["weights"], rank1["weights"]):
        assert all(torch.equal(a, b) for a, b in zip(step0, step1))
    for a, b in zip(rank0["alphas"][0], single["alphas"][0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(rank0["weights"][0], single["weights"][0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    # every rank reports the same epoch: losses averaged over the ranks, accuracy on all of val
    def without_seconds(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert without_seconds(rank0["history"]) == without_seconds(rank1["history"])


def make_trainer(strategy: str = "gradient") -> SearchTrainer:
    torch.manual_seed(0)
    mode = "single" if strategy == "reinforce" else "two-path"
    config = SearchConfig(
        target_ms=0.1,
        epochs=2,
        warmup_epochs=1,
        batch_size=16,
        arch_every=2,
        arch_lr=0.05,
        loss="add-linear",
        strategy=strategy,
        mode=mode,
    )
    return SearchTrainer(SuperNet(SPACE, mode, seed=0), table(), small_digits(), config)


@pytest.mark.parametrize("strategy", ["gradient", "reinforce"])
def test_ctrl_c_mid_epoch_saves_a_checkpoint_that_resumes_to_the_same_search(tmp_path, strategy):
    with torch_threads(1):
        whole = make_trainer(strategy)
        whole.run()
        interrupted = make_trainer(strategy)
        checkpoint = Checkpointer(tmp_path / "checkpoint.pt", {"test": strategy})
        steps = 0
        before = signal.getsignal(signal.SIGINT)

        def ctrl_c() -> None:  # a real SIGINT, in the middle of the second search epoch
            nonlocal steps
            steps += 1
            if steps == 6 + 6 + 3:
                os.kill(os.getpid(), signal.SIGINT)

        with pytest.raises(KeyboardInterrupt, match="stopped at epoch 3, step 3"):
            interrupted.run(on_step=ctrl_c, on_checkpoint=checkpoint.save)
        assert signal.getsignal(signal.SIGINT) is before  # the search's handler is gone
        resumed = make_trainer(strategy)
        assert checkpoint.restore(resumed)
        assert (resumed.progress.epoch, resumed.progress.step) == (2, 3)
        resumed.run()
    assert resumed.net.arch() == whole.net.arch()
    for a, b in zip(resumed.net.arch_parameters(), whole.net.arch_parameters()):
        assert torch.equal(a, b)
    for a, b in zip(resumed.net.state_dict().values(), whole.net.state_dict().values()):
        assert torch.equal(a, b)
    assert [r.val_acc for r in resumed.history] == [r.val_acc for r in whole.history]


def test_resuming_another_search_or_a_broken_file_is_one_line(tmp_path):
    trainer = make_trainer()
    path = tmp_path / "checkpoint.pt"
    Checkpointer(path, {"epochs": 2, "space": "proxyless-tiny"}).save(trainer)
    with pytest.raises(LatkitError, match=r"is a search with epochs = 2, not 3; run with the same"):
        Checkpointer(path, {"epochs": 3, "space": "proxyless-tiny"}).restore(trainer)
    path.write_bytes(b"torn")
    with pytest.raises(LatkitError, match="not a readable latkit checkpoint"):
        Checkpointer(path, {}).restore(trainer)
    assert not Checkpointer(tmp_path / "none.pt", {}).restore(trainer)


def test_strategies_and_losses_keep_their_state_in_state_dicts():
    net = SuperNet(SPACE, "two-path", seed=0)
    config = SearchConfig(target_ms=0.1, loss="add-linear", arch_lr=0.05)
    data = small_digits()
    step = GradientStep(net, table(), config)
    x, y = data.val.x[:8], data.val.y[:8]
    step.step(x, y, torch.Generator().manual_seed(0))
    state = step.state_dict()
    assert state["loss"] == {} and state["optimizer"]["state"]
    fresh = GradientStep(SuperNet(SPACE, "two-path", seed=0), table(), config)
    fresh.load_state_dict(state)
    assert fresh.optimizer.state_dict()["state"][0]["step"] == 1
    with pytest.raises(LatkitError, match="keeps no state"):
        MulLog().load_state_dict({"multiplier": 1.0})
    reinforce = ReinforceStep(SuperNet(SPACE, "single", seed=0), table(), config)
    reinforce.step(x, y, torch.Generator().manual_seed(0))
    other = ReinforceStep(SuperNet(SPACE, "single", seed=0), table(), config)
    other.load_state_dict(reinforce.state_dict())
    assert other.baseline.value == reinforce.baseline.value is not None
