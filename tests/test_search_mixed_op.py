"""The mixed op: memory of one path, exact binary-gate gradients, α gradient, two-path rescale.

Synthetic input tensors (allowed in tests); the candidates are the real modules of proxyless-tiny.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latkit.search.mixed_op import Binarize, GatedPath, MixedOp
from latkit.search.supernet import SuperNet, trainable_op
from latkit.spaces import load_space

SPACE = load_space("proxyless-tiny")
# layer 1: 16x16x24 -> 16x16x24 with identity skip: six MBConvs and zero
LAYER = SPACE.layers()[1]


def make_mixed(mode: str = "two-path", seed: int = 0) -> MixedOp:
    torch.manual_seed(seed)
    candidates = [trainable_op(op, seed + i) for i, op in enumerate(LAYER.candidates)]
    for c in candidates:  # non-zero residual branches, so that every candidate differs
        for bn in c.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.data.fill_(1.0)
    mixed = MixedOp(candidates, mode, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        mixed.alpha.copy_(torch.randn(len(candidates), generator=torch.Generator().manual_seed(7)))
    return mixed


def example(seed: int = 0, batch: int = 4) -> torch.Tensor:
    op = LAYER.candidates[0]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, op.cin, op.input_hw, op.input_hw, generator=g)


def set_path(mixed: MixedOp, active: int, involved: tuple[int, ...]) -> None:
    mixed.phase = "arch"
    mixed.active = active
    mixed.involved = involved
    mixed._involved_alpha = mixed.alpha.detach()[list(involved)].clone()


def saved_bytes(fn) -> int:
    """Bytes of every tensor autograd saves for backward while `fn` runs."""
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


def test_two_path_keeps_only_the_active_candidates_activations():
    mixed = make_mixed("two-path")
    active, other = 5, 0  # k7e6 active, k3e3 the other sampled one
    set_path(mixed, active, (active, other))
    x = example().requires_grad_(True)
    calls: list[tuple[int, bool]] = []
    for index, candidate in enumerate(mixed.candidates):
        candidate.register_forward_hook(
            lambda _m, _i, _o, index=index: calls.append((index, torch.is_grad_enabled()))
        )

    mixed_bytes, out = saved_bytes(lambda: mixed(x))
    assert [i for i, _ in calls] == [active], "forward must run the active candidate only"
    plain_bytes, _ = saved_bytes(lambda: mixed.candidates[active](x.detach().requires_grad_()))
    # the active path's graph, the detached input and output of the gated function, and the
    # logits and sampled indices that Binarize keeps (a few bytes)
    io_bytes = 2 * x.numel() * x.element_size() + 1024
    assert plain_bytes <= mixed_bytes <= plain_bytes + io_bytes

    calls.clear()
    (out * torch.randn_like(out)).sum().backward()
    assert calls == [(other, False)], "backward recomputes the other candidate under no_grad"

    mixed.mode = "all-path"
    all_bytes, _ = saved_bytes(lambda: mixed(x))
    assert all_bytes > 3 * mixed_bytes


def test_recomputation_leaves_batch_norm_statistics_alone():
    mixed = make_mixed("two-path")
    set_path(mixed, 1, (1, 3))
    before = mixed.candidates[3].project[1].running_mean.clone()
    out = mixed(example())
    out.sum().backward()
    assert torch.equal(mixed.candidates[3].project[1].running_mean, before)


@pytest.mark.parametrize("mode,involved", [("two-path", (2, 6)), ("single", tuple(range(7)))])
def test_binary_gate_gradients_equal_an_all_path_reference(mode, involved):
    mixed = make_mixed(mode)
    active = involved[0]
    set_path(mixed, active, involved)
    x = example(1)
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))

    x1 = x.clone().requires_grad_(True)
    gates = torch.zeros(len(mixed.candidates))
    gates[active] = 1.0
    gates.requires_grad_(True)
    out = GatedPath.apply(x1, gates, mixed)
    (torch.tanh(out) * weight).sum().backward()

    x2 = x.clone().requires_grad_(True)
    ref_gates = torch.zeros(len(mixed.candidates))
    ref_gates[active] = 1.0
    ref_gates.requires_grad_(True)
    ref = sum(ref_gates[j] * mixed.candidates[j](x2) for j in range(len(mixed.candidates)))
    (torch.tanh(ref) * weight).sum().backward()

    torch.testing.assert_close(out, ref.detach())
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-6)
    expected = torch.zeros_like(ref_gates.grad)
    expected[list(involved)] = ref_gates.grad[list(involved)]
    torch.testing.assert_close(gates.grad, expected, rtol=1e-4, atol=1e-5)
    assert gates.grad[list(involved)].abs().min() > 0


@pytest.mark.parametrize("mode,involved", [("two-path", (4, 1)), ("single", tuple(range(7)))])
def test_alpha_gradient_matches_the_formula_and_finite_differences(mode, involved):
    mixed = make_mixed(mode)
    set_path(mixed, involved[0], involved)
    x = example(2)
    target = torch.randint(0, 24, (x.shape[0],), generator=torch.Generator().manual_seed(4))

    gate_grads = {}

    def capture(grad):
        gate_grads["g"] = grad.detach().clone()

    gates = Binarize.apply(mixed.alpha, torch.tensor(involved), mixed.active)
    gates.register_hook(capture)
    out = GatedPath.apply(x, gates, mixed)
    F.cross_entropy(out.mean(dim=(2, 3)), target).backward()
    g = gate_grads["g"].double()
    alpha = mixed.alpha.detach().double()

    idx = list(involved)
    p = torch.softmax(alpha[idx], 0)
    explicit = torch.zeros_like(alpha)
    for a, i in enumerate(idx):  # ∂L/∂α_i = Σ_j ∂L/∂g_j p_j (δ_ij − p_i), written out
        explicit[i] = sum(g[j] * p[b] * (float(a == b) - p[a]) for b, j in enumerate(idx))
    torch.testing.assert_close(mixed.alpha.grad.double(), explicit, rtol=1e-5, atol=1e-8)

    def surrogate(a: torch.Tensor) -> float:
        return float((g[idx] * torch.softmax(a[idx], 0)).sum())

    eps = 1e-6
    numeric = torch.zeros_like(alpha)
    for i in range(len(alpha)):
        up, down = alpha.clone(), alpha.clone()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (surrogate(up) - surrogate(down)) / (2 * eps)
    torch.testing.assert_close(mixed.alpha.grad.double(), numeric, rtol=1e-4, atol=1e-7)
    outside = [i for i in range(len(alpha)) if i not in involved]
    assert torch.all(mixed.alpha.grad[outside] == 0)


def test_rescale_keeps_the_unsampled_probabilities():
    mixed = make_mixed("two-path")
    generator = torch.Generator().manual_seed(5)
    optimizer = torch.optim.Adam([mixed.alpha], lr=0.1, betas=(0.0, 0.999))
    for _ in range(5):
        mixed.sample("arch", generator)
        before = mixed.probs.detach().clone()
        pair = list(mixed.involved)
        out = mixed(example(3))
        optimizer.zero_grad()
        (out**2).mean().backward()
        optimizer.step()
        moved = mixed.probs.detach().clone()
        mixed.rescale()
        after = mixed.probs.detach()
        others = [i for i in range(len(after)) if i not in pair]
        torch.testing.assert_close(after[others], before[others], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(after[pair].sum(), before[pair].sum(), rtol=1e-5, atol=1e-7)
        assert not torch.allclose(after[pair], before[pair])
        assert not torch.allclose(moved[others], before[others], rtol=1e-6, atol=0)


def test_sampling_follows_each_mode():
    generator = torch.Generator().manual_seed(0)
    two = make_mixed("two-path")
    two.sample("arch", generator)
    assert len(set(two.involved)) == 2 and two.active in two.involved
    single = make_mixed("single")
    single.sample("arch", generator)
    assert single.involved == tuple(range(7))
    single.sample("weights", generator)
    assert single.involved == (single.active,)
    single.sample("fixed")
    assert single.active == int(torch.argmax(single.alpha))


def test_supernet_runs_every_mode_and_phase():
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for mode in ("single", "two-path", "all-path"):
        net = SuperNet(SPACE, mode, seed=1)
        assert len(net.arch_parameters()) == len(SPACE.layers())
        assert not {id(p) for p in net.arch_parameters()} & {id(p) for p in net.weight_parameters()}
        for phase in ("weights", "arch", "fixed"):
            net.sample(phase, torch.Generator().manual_seed(1))
            out = net(x)
            assert out.shape == (2, 10)
            out.sum().backward()
        assert all(a.grad is not None for a in net.arch_parameters())
        assert len(net.arch()) == len(SPACE.layers())
