import pytest
from pydantic import ValidationError

import gdscope as gs
from gdscope.config import format_validation_error


def test_hash_is_stable_and_content_based():
    a = gs.TrialConfig.model_validate({"model": {"width": 64}, "steps": 10})
    b = gs.TrialConfig.model_validate({"steps": 10, "model": {"width": 64}})
    c = gs.TrialConfig.model_validate({"model": {"width": 65}, "steps": 10})
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert len(a.content_hash()) == 64
    assert gs.TrialConfig.model_validate_json(a.model_dump_json()) == a


def test_config_is_immutable():
    cfg = gs.TrialConfig()
    with pytest.raises(ValidationError):
        cfg.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ({"model": {"widht": 3}}, ["model.widht", "did you mean 'width'"]),
        ({"optimzer": {}}, ["optimzer", "did you mean 'optimizer'"]),
        ({"model": {"width": "wide"}}, ["model.width", "'wide'"]),
        ({"optimizer": {"momentum": 1.0}}, ["optimizer.momentum", "[0, 1)", "got 1.0"]),
        ({"optimizer": {"lr": "auto"}}, ["optimizer.lr", "auto_kernel"]),
        ({"optimizer": {"lr": float("inf")}}, ["optimizer.lr", "finite"]),
        ({"stop": {"accuracy_at_least": 2}}, ["stop.accuracy_at_least", "got 2"]),
        ({"dtype": "float16"}, ["dtype", "'float32'", "'float64'"]),
    ],
)
def test_validation_errors_name_field_and_value(raw, fragments):
    with pytest.raises(ValidationError) as info:
        gs.TrialConfig.model_validate(raw)
    message = format_validation_error(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
