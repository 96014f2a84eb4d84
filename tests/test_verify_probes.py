import pytest
import torch

from gdscope.verify_probes import verify_probes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_fast_path_agrees_with_its_oracle(dtype):
    checks = verify_probes(dtype, seed=5)
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    assert len({c.case for c in checks}) >= 9
    assert {c.quantity for c in checks} == {
        "ntk_gram",
        "ntk λ_max",
        "hvp",
        "sharpness",
        "linearized f",
    }
