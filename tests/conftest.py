"""Fixtures that expand the seeded cases of ``cases.py`` (one test per case, ids = case names).

``net_case`` runs a test on every regression net of :data:`cases.NET_CASES`, ``curvature_case``
on every model-and-loss pair of :data:`cases.CURVATURE_CASES`; both are built from
``case_seed`` (0 unless a test parametrizes it). Narrow a set with
``@pytest.mark.parametrize("net_case", ["two_layer"], indirect=True)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory holding nag-acceleration at smoke scale; tests must leave it as is."""
    from gdscope.cli import main

    folder = tmp_path_factory.mktemp("smoke") / "stored"
    argv = ["gdscope", "run", "nag-acceleration", "--scale", "smoke", "--results", str(folder)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [*argv, "--no-report"])
        with pytest.raises(SystemExit) as exit_:
            main()
    assert exit_.value.code == 0 and (folder / "gdscope.sqlite").is_file()
    return folder
