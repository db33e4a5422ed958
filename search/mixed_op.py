"""ProxylessNAS's mixed op: architecture logits over candidates, and binary gates.

A `MixedOp` holds the candidates of one searchable layer and their logits α. It runs in one of
three modes, which decide what an architecture step computes:

- `single`: one path sampled from softmax(α); ∂L/∂g_j for every candidate (ProxylessNAS "full").
- `two-path`: two candidates sampled without replacement, softmax over the two, one of them active;
  after the arch step the two logits are shifted so the other candidates' probabilities stay put.
- `all-path`: DARTS's softmax-weighted sum of every candidate, the memory baseline.

In `single` and `two-path` only the active candidate's activations are kept for backward. The others
are recomputed under `no_grad` in backward, only to get ∂L/∂g_j = Σ(out_j · grad_out), and
∂L/∂α_i = Σ_j ∂L/∂g_j · p_j(δ_ij − p_i) follows through `Binarize`'s backward.

Weight steps in `single` and `two-path` train the one path sampled from softmax(α), as plain modules.

Every tensor a mixed op creates lives on α's device; paths are sampled on the CPU from a CPU
generator (a path index is a Python int anyway), so the same seed samples the same paths on any
device and on every rank of a data-parallel search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from latkit.errors import LatkitError

MODES: tuple[str, ...] = ("single", "two-path", "all-path")
PHASES: tuple[str, ...] = ("weights", "arch", "fixed")


class Binarize(torch.autograd.Function):
    """α -> one-hot binary gates over all candidates, with ProxylessNAS's gradient.

    Forward puts 1 at `active`. Backward maps ∂L/∂g to ∂L/∂α_i = Σ_j ∂L/∂g_j p_j(δ_ij − p_i),
    where p is the softmax over the `involved` candidates only (all in `single`, two in
    `two-path`); logits outside `involved` get no gradient from the gates.
    """

    @staticmethod
    def forward(ctx, alpha: torch.Tensor, involved: torch.Tensor, active: int) -> torch.Tensor:
        ctx.save_for_backward(alpha, involved)
        gates = torch.zeros_like(alpha)
        gates[active] = 1.0
        return gates

    @staticmethod
    def backward(ctx, grad_gates: torch.Tensor):
        alpha, involved = ctx.saved_tensors
        p = torch.softmax(alpha[involved], dim=0)
        g = grad_gates[involved]
        grad_alpha = torch.zeros_like(alpha)
        grad_alpha[involved] = p * (g - (p * g).sum())
        return grad_alpha, None, None


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Batch norm that normalises with batch statistics but leaves its running averages alone.

    The backward-time recomputation of inactive candidates is bookkeeping, not a training pass:
    it must not move their running statistics.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def autocast_state(kind: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory for the autocast context now in force on `kind`, to re-enter it in backward
    (autograd runs backward outside the forward's autocast block)."""
    if not torch.amp.is_autocast_available(kind) or not torch.is_autocast_enabled(kind):
        return contextlib.nullcontext
    dtype = torch.get_autocast_dtype(kind)
    return lambda: torch.autocast(kind, dtype)


class GatedPath(torch.autograd.Function):
    """Σ_j g_j · op_j(x) for one-hot g, storing only the active candidate's activations.

    Forward runs the active candidate on a detached input and keeps its graph. Backward
    propagates grad_out through that graph to x, and recomputes each other involved candidate
    under `no_grad` to get its gate gradient Σ(out_j · grad_out); those outputs live one at a
    time and are never saved. The recomputation runs under the autocast state of the forward,
    and the gate gradients are summed in the gates' own dtype (float32) on their device.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, gates: torch.Tensor, mixed: MixedOp) -> torch.Tensor:
        ctx.mixed = mixed
        ctx.active = mixed.active
        ctx.involved = mixed.involved
        ctx.gates = (gates.dtype, gates.device)
        ctx.autocast = autocast_state(x.device.type)
        detached = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            out = mixed.candidates[mixed.active](detached)
        ctx.save_for_backward(detached, out)
        return out.detach()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        detached, out = ctx.saved_tensors
        mixed: MixedOp = ctx.mixed
        grad_x = None
        if ctx.needs_input_grad[0]:
            if out.requires_grad:
                (grad_x,) = torch.autograd.grad(out, detached, grad_out)
            else:
                grad_x = torch.zeros_like(detached)
        grad_gates = None
        if ctx.needs_input_grad[1]:
            dtype, device = ctx.gates
            grad_gates = torch.zeros(len(mixed.candidates), dtype=dtype, device=device)
            with torch.no_grad(), ctx.autocast():
                for k in ctx.involved:
                    if k == ctx.active:
                        out_k = out.detach()
                    else:
                        with frozen_bn_stats(mixed.candidates[k]):
                            out_k = mixed.candidates[k](detached.detach())
                    grad_gates[k] = torch.sum(out_k * grad_out, dtype=dtype)
                    del out_k
        return grad_x, grad_gates, None


class MixedOp(nn.Module):
    """One searchable layer: candidates, their logits `alpha`, and the sampled path."""

    def __init__(
        self,
        candidates: Sequence[nn.Module],
        mode: str = "two-path",
        init_std: float = 1e-3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise LatkitError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if len(candidates) < 2 and mode == "two-path":
            raise LatkitError("two-path mode needs at least two candidates per layer")
        self.candidates = nn.ModuleList(candidates)
        # ProxylessNAS's 'normal' init: N(0, 1e-3), i.e. almost uniform probabilities.
        self.alpha = nn.Parameter(torch.randn(len(candidates), generator=generator) * init_std)
        self.mode = mode
        self.phase = "weights"
        self.active = 0
        self.involved: tuple[int, ...] = (0,)
        self._involved_alpha: torch.Tensor | None = None

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha, dim=0)

    @property
    def chosen(self) -> int:
        """The argmax candidate: what the final architecture takes from this layer."""
        return int(torch.argmax(self.alpha.detach()))

    def entropy(self) -> torch.Tensor:
        p = self.probs
        return -(p * torch.log(p + 1e-8)).sum()

    def sample(self, phase: str, generator: torch.Generator | None = None) -> None:
        """Pick the path(s) of the next step. Weight steps sample one path from softmax(α)."""
        if phase not in PHASES:
            raise LatkitError(f"phase {phase!r} is not one of {', '.join(PHASES)}")
        self.phase = phase
        probs = self.probs.detach().float().cpu()
        self._involved_alpha = None
        if phase == "fixed":
            self.active = self.chosen
            self.involved = (self.active,)
        elif phase == "weights" or self.mode == "single":
            self.active = int(torch.multinomial(probs, 1, generator=generator))
            self.involved = (
                tuple(range(len(self.candidates)))
                if phase == "arch" and self.mode == "single"
                else (self.active,)
            )
        elif self.mode == "two-path":
            pair = torch.multinomial(probs, 2, replacement=False, generator=generator).tolist()
            pair_probs = torch.softmax(self.alpha.detach()[pair].float().cpu(), dim=0)
            self.active = pair[int(torch.multinomial(pair_probs, 1, generator=generator))]
            self.involved = tuple(pair)
            self._involved_alpha = self.alpha.detach()[pair].clone()
        else:
            self.involved = tuple(range(len(self.candidates)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "all-path" and self.phase != "fixed":
            # DARTS: every candidate runs; weight steps leave α out of the graph.
            weights = self.probs if self.phase == "arch" else self.probs.detach()
            return sum(w * op(x) for w, op in zip(weights, self.candidates))
        if self.phase == "arch":
            involved = torch.tensor(self.involved, dtype=torch.long, device=self.alpha.device)
            gates = Binarize.apply(self.alpha, involved, self.active)
            return GatedPath.apply(x, gates, self)
        return self.candidates[self.active](x)

    @torch.no_grad()
    def rescale(self) -> None:
        """Two-path only: shift the two updated logits by one offset so that their total
        exp-mass, and hence every other candidate's probability, is what it was before the step."""
        if self._involved_alpha is None:
            return
        pair = list(self.involved)
        old, new = self._involved_alpha, self.alpha[pair]
        offset = torch.logsumexp(new, 0) - torch.logsumexp(old, 0)
        self.alpha[pair] -= offset
        self._involved_alpha = None
