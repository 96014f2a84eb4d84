"""Fixtures that expand the seeded cases of ``cases.py`` (one test per case, ids = case names).

``net_case`` runs a test on every regression net of :data:`cases.NET_CASES`, ``curvature_case``
on every model-and-loss pair of :data:`cases.CURVATURE_CASES`; both are built from
``case_seed`` (0 unless a test parametrizes it). Narrow a set with
``@pytest.mark.parametrize("net_case", ["two_layer"], indirect=True)``.
"""

from __future__ import annotations

import pytest
import torch

from cases import CURVATURE_CASES, NET_CASES, Case


@pytest.fixture
def case_seed() -> int:
    """The seed the case fixtures build from; override with ``parametrize("case_seed", ...)``."""
    return 0


@pytest.fixture(params=list(NET_CASES))
def net_case(request: pytest.FixtureRequest, case_seed: int) -> Case:
    """A regression net with its mse loss and batch, one per entry of ``NET_CASES``."""
    return NET_CASES[request.param](case_seed)


@pytest.fixture(params=list(CURVATURE_CASES))
def curvature_case(request: pytest.FixtureRequest, case_seed: int) -> Case:
    """A tanh MLP or CNN with an mse or cross-entropy batch, one per ``CURVATURE_CASES`` entry."""
    return CURVATURE_CASES[request.param](case_seed)


@pytest.fixture
def one_thread():
    """Run the test on one torch thread (small products: threads cost more than they give)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
