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
        "sharpness, one block",
        "ggn λ_max",
        "preconditioned λ_max",
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
    failed = [c for c in verify_probes(torch.float64, 5, ["mlp[data span]"]) if not c.ok]
    assert ("mlp[data span]", "sharpness") in {(c.case, c.quantity) for c in failed}
    span_module.release()


def test_a_wrong_preconditioner_is_caught(monkeypatch):
    """verify-probes covered neither the Gauss–Newton nor the preconditioned sharpness; a
    preconditioner 10 % off now fails."""
    import gdscope.probes.preconditioned as pre

    real = pre._diagonal
    monkeypatch.setattr(pre, "_diagonal", lambda *a: 1.1 * real(*a))
    checks = verify_probes(torch.float64, 5, ["mlp[standard]", "cnn"])
    failed = {(c.case, c.quantity) for c in checks if not c.ok}
    assert ("mlp[standard]", "preconditioned λ_max") in failed
    assert ("cnn", "preconditioned λ_max") in failed
    assert not any(q in {"ggn λ_max", "sharpness"} for _, q in failed)


def test_an_unknown_case_is_refused_by_name():
    with pytest.raises(ValueError, match=r"cases: unknown \['mlp\[nope\]'\]"):
        verify_probes(torch.float64, 0, ["mlp[nope]"])
