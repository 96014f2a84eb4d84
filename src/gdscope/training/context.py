"""``ProbeContext``: what a scheduled probe may read at one checkpoint of ``gdscope.train``.

It caches what several probes need at the same checkpoint (the model output, the full-batch
gradient, the NTK Gram and its spectrum), so ``{"ntk_spectrum": 10, "sandwich": 10}`` builds one
Gram per checkpoint; ``memory`` carries state across the checkpoints of one run. ``optimizer``
is the optimizer that trains the model, for probes that read its state (the preconditioner of an
adaptive method); a loop that does not pass it leaves it ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gdscope.functional import Params
from gdscope.probes.ntk import NTKSpectrum, ntk_gram, ntk_spectrum

__all__ = ["LossFn", "ProbeContext"]

LossFn = Callable[[Tensor, Tensor], Tensor]

WARM_START_MIX = 1.0
"""Norm of the random direction added to a warm start's unit vector (``warm_start``)."""


@dataclass
class ProbeContext:
    """What a scheduled probe may read at one checkpoint.

    Attributes:
        model: the network, holding the parameters θ_t of this checkpoint.
        params: detached views of the trainable parameters θ_t.
        init_params: a copy of θ_0.
        loss_fn: the training loss ``loss_fn(output, target)``.
        data: the full training set ``(x, y)``.
        eval_data: held-out ``(x, y)`` or ``None``.
        step: the checkpoint's step t.
        cache: work shared by the probes of this checkpoint.
        memory: state kept across the checkpoints of one run.
        optimizer: the ``torch.optim.Optimizer`` that trains ``model`` (its state as of the
            last update before this checkpoint), or ``None`` when the loop does not pass it.
        gd_step: ``η`` when every update is plain full-batch gradient descent with one step
            for every parameter (``torch.optim.SGD`` without momentum or weight decay, the
            gradient of the whole of ``data``: :func:`~gdscope.probes.infinite_dynamics.plain_gd_lr`),
            else ``None`` (also when not known, as in a user's own loop).

    """

    model: nn.Module
    params: Params
    init_params: Params
    loss_fn: LossFn
    data: tuple[Tensor, Tensor]
    eval_data: tuple[Tensor, Tensor] | None
    step: int
    cache: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None
    gd_step: float | None = None

    def warm_start(self, key: str) -> Tensor | None:
        """Return the top eigenvector stored in ``memory[key]`` plus a fresh random direction.

        Lanczos' residual rule stops near *an* eigenvalue. Started from the last eigenvector
        alone, a probe whose top eigenvector has turned (two eigenvalues crossed in training) can
        stop at ``λ₂``, and started from that vector again, stay there. The added direction, of
        equal norm, gives every start the share of the new top eigenvector a random start has
        (about ``1/√(2P)``), while the previous vector still carries most of it when it moved
        little. That share shows only if the rule lets the Krylov space grow: at ``tol = 1e-3``
        the ``λ₂`` pair still met the rule first at a few checkpoints of an edge-of-stability
        run, so the scheduled sharpness probes ask for ``1e-6``
        (:data:`gdscope.training.scheduled.SHARPNESS_TOL`). Draws come from a generator kept in ``memory`` (seeded 0): a trial stays
        reproducible. ``None`` (a random start) before anything is stored.
        """
        last = self.memory.get(key)
        if last is None:
            return None
        generator = self.memory.setdefault(f"{key}_generator", torch.Generator().manual_seed(0))
        fresh = torch.randn(last.shape, generator=generator, dtype=last.dtype).to(last.device)
        return last / torch.linalg.vector_norm(last) + WARM_START_MIX * fresh / fresh.norm()

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def train_output(self) -> Tensor:
        """Return the model output on the whole training set (computed once per checkpoint)."""

        def compute() -> Tensor:
            with torch.no_grad():
                return self.model(self.data[0])

        return self._cached("train_output", compute)

    def loss(self) -> float:
        """Return the full-batch training loss."""
        return self._cached("loss", lambda: float(self.loss_fn(self.train_output(), self.data[1])))

    def train_grads(self) -> list[Tensor]:
        """Return the full-batch gradients, one per trainable parameter (computed once)."""

        def compute() -> list[Tensor]:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            with torch.enable_grad():
                loss = self.loss_fn(self.model(self.data[0]), self.data[1])
                return list(torch.autograd.grad(loss, trainable))

        return self._cached("train_grads", compute)

    def grad_norm_sq(self) -> float:
        """Return ``‖∇L‖²`` of the full-batch loss, accumulated in float64."""
        return self._cached(
            "grad_norm_sq",
            lambda: sum(float(torch.sum(g.double() ** 2)) for g in self.train_grads()),
        )

    def gram(self) -> Tensor:
        """Return the NTK Gram ``J Jᵀ`` (``nk × nk``, float64) on the training inputs."""
        return self._cached("ntk_gram", lambda: ntk_gram(self.model, self.data[0]))

    def spectrum(self) -> NTKSpectrum:
        """Return the spectrum of :meth:`gram` (float64)."""
        return self._cached("ntk_spectrum", lambda: ntk_spectrum(self.gram()))
