import pytest
import torch

import gdscope.probes._data_span as span_module
from gdscope.verify_probes import verify_probes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_fast_path_agrees_with_its_oracle(dtype):
    checks = verify_probes(dtype, seed=5)
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    assert len({c.case for c in checks}) >= 10
    assert "mlp[data span]" in {c.case for c in checks}
    assert {c.quantity for c in checks} == {
        "ntk_gram",
        "ntk λ_max",
        "ntk λ_min",
        "hvp",
        "sharpness",
        "linearized f",
    }


def test_a_broken_data_span_is_caught(monkeypatch):
    """Its basis scaled by 0.9: sharpness 10 % low; verify passed 45/45 without a span case."""
    row_basis = span_module._row_basis

    def shrunk(flat):
        q, r = row_basis(flat)
        return 0.9 * q, r

    span_module.release()
    monkeypatch.setattr(span_module, "_row_basis", shrunk)
    failed = [c for c in verify_probes(torch.float64, seed=5) if not c.ok]
    assert ("mlp[data span]", "sharpness") in {(c.case, c.quantity) for c in failed}
    span_module.release()
