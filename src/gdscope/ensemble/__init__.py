"""Train many same-shaped models at once (``stack_module_state`` + ``vmap``), as the loop would.

* :class:`Ensemble`: M structurally identical models as stacked tensors, one batched forward
  and backward for all of them; with ``exact=True`` bitwise what each model gives alone.
* :class:`StackedSGD`: ``torch.optim.SGD`` (GD, heavy ball, Nesterov) on the stacked tensors,
  with a step size, momentum and weight decay per member.
* :func:`train_ensemble`: ``gdscope.train`` for all members at once, one ``Trace`` each
  (per-member probes, divergence and stop rules).
* :func:`group_trials`, :func:`can_batch`, :func:`run_trial_group`: which trial configs of a study
  train together (they differ only in seed, learning rate and init scale) and running a group;
  anything that cannot be reproduced exactly runs one by one instead.

Example:
    >>> import torch, gdscope as gs
    >>> from gdscope.ensemble import train_ensemble
    >>> nets = [gs.models.two_layer(4, 16, seed=s) for s in range(4)]
    >>> opts = [torch.optim.SGD(n.parameters(), lr=0.5) for n in nets]
    >>> x, y = gs.data.sphere(n=8, d=4, seed=0)
    >>> traces = train_ensemble(nets, opts, (x, y), steps=10, probes={"loss": 5})
    >>> len(traces), traces[0].series("loss")[0].tolist()
    (4, [0, 5, 10])

"""

from gdscope.ensemble._errors import NotBatchableError
from gdscope.ensemble._exact import per_member_products
from gdscope.ensemble._optim import StackedSGD, fused_matches_torch
from gdscope.ensemble._stack import Ensemble, aligned_stack, check_same_structure
from gdscope.ensemble._train import train_ensemble
from gdscope.ensemble._trials import (
    BATCHED_OPTIMIZERS,
    VARYING,
    batch_refusal,
    can_batch,
    group_trials,
    run_trial_group,
)

__all__ = [
    "BATCHED_OPTIMIZERS",
    "VARYING",
    "Ensemble",
    "NotBatchableError",
    "StackedSGD",
    "aligned_stack",
    "batch_refusal",
    "can_batch",
    "check_same_structure",
    "fused_matches_torch",
    "group_trials",
    "per_member_products",
    "run_trial_group",
    "train_ensemble",
]
