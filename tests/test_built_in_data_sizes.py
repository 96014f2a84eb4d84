"""A size a built-in data set does not take (``data.d`` of ``digits``) is refused, stored ``null``.

Before, ``gdscope train --data digits --d 5`` trained on the 64-pixel digits as if nothing were
wrong, the stored config said ``data.d = 16`` (or 5) for inputs of 64 features, and three
catalogue studies set ``data.d = 4`` for the one-dimensional ``chebyshev`` inputs. A store
written then still verifies (``tests/test_api.py``, ``tests/test_config.py``'s pinned hashes).
"""

import inspect

import pytest
from pydantic import ValidationError

from _helpers import run_cli
from gdscope._stored_form import BUILT_IN_SIZES, SIZES, stored_form
from gdscope._validation import format_errors
from gdscope.config import TrialConfig
from gdscope.config.base import EVERY_FIELD, STORED
from gdscope.data.registry import BUILT_IN_DATASETS


def test_the_torch_free_table_of_sizes_is_the_built_in_loaders_signatures():
    assert set(BUILT_IN_SIZES) == set(BUILT_IN_DATASETS)
    for name, loader in BUILT_IN_DATASETS.items():
        taken = {p.name for p in inspect.signature(loader).parameters.values()}
        assert BUILT_IN_SIZES[name] == tuple(s for s in SIZES if s in taken), name


@pytest.mark.parametrize(
    ("data", "size"),
    [
        ({"name": "digits", "d": 5}, "d"),
        ({"name": "chebyshev", "n": 20, "d": 4}, "d"),
        ({"name": "mnist1d", "n": 100, "d": 40}, "d"),
        ({"name": "sphere_images", "d": 8}, "d"),
    ],
)
def test_a_size_a_built_in_data_set_ignores_is_refused_in_one_line(data, size):
    raw = {"data": data}
    with pytest.raises(ValidationError) as info:
        TrialConfig.model_validate(raw)
    message = format_errors(info.value, TrialConfig, raw)
    expected = f"data.{size} = {data[size]}: data set {data['name']!r} takes no {size!r}"
    assert expected in message and f"remove data.{size}" in message
    assert "give the loader" not in message  # a built-in loader is not the user's to change
    assert len(message.splitlines()) == 1


def test_an_unread_size_is_stored_null_under_the_hash_it_had():
    config = TrialConfig.model_validate({"data": {"name": "digits", "n": 32}})
    assert config.model_dump(mode="json")["data"]["d"] is None
    assert config.model_dump(mode="json", context={EVERY_FIELD: True})["data"]["d"] == 16
    again = TrialConfig.model_validate_json(config.model_dump_json())
    assert again == config and again.content_hash() == config.content_hash()
    sphere = TrialConfig.model_validate({"data": {"name": "sphere", "d": 5}})
    assert sphere.model_dump(mode="json")["data"]["d"] == 5  # a size the loader takes stays


def test_a_stored_size_the_loader_ignored_reads_null_and_keeps_its_hash():
    """A store written when ``data.d = 5`` of digits was accepted: the loader never read it."""
    raw = {"data": {"name": "digits", "n": 32, "d": 5}, "seed": 0}
    stored = TrialConfig.model_validate(raw, context={STORED: True})
    assert stored.data.d == 5  # validated as stored: the hash it was stored under
    unset = TrialConfig.model_validate({**raw, "data": {"name": "digits", "n": 32}})
    assert stored.content_hash() != unset.content_hash()
    row = stored.model_dump(mode="json", context={EVERY_FIELD: True})  # as the old code wrote it
    assert row["data"]["d"] == 5 and stored_form(row)["data"]["d"] is None
    assert stored_form({"data": {"name": "digits", "n": 32, "d": 16}})["data"]["d"] is None


def test_gdscope_train_refuses_a_size_the_data_set_ignores(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "train", "--data", "digits", "--d", "5")
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "data.d = 5: data set 'digits' takes no 'd'" in err
