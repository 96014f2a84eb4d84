"""A stop rule that mini-batch training would never check is refused; the CLI shows what it reads.

A new-user review: ``gdscope train --data digits --batch-size 32 --stop-accuracy 0.2`` ran all
its steps (with mini-batches a rule is checked where its metric is measured, and nothing
measured the accuracy); in full-batch mode the rule read the accuracy every step while the table
showed "–" until the stop.
"""

import json
import typing

import pytest
from pydantic import ValidationError

from _helpers import run_cli
from gdscope._validation import format_errors
from gdscope.config import TrialConfig

TINY = ("train", "--data", "digits", "--width", "16", "--steps", "40", "--json")


@pytest.mark.parametrize(
    ("stop", "metric"), [({"accuracy_at_least": 0.5}, "accuracy"), ({"loss_below": 0.1}, "loss")]
)
def test_a_mini_batch_stop_rule_without_its_probe_is_refused_in_one_line(stop, metric):
    raw = {"data": {"name": "digits", "n": 64}, "batch_size": 8, "stop": stop, "probes": {}}
    with pytest.raises(ValidationError) as info:
        TrialConfig.model_validate(raw)
    message = format_errors(info.value, TrialConfig, raw)
    assert f"nothing measures it; add probes.{metric} (--probe {metric}=1" in message
    assert len(message.splitlines()) == 1
    TrialConfig.model_validate({**raw, "probes": {metric: 5}})  # measured: checked there
    TrialConfig.model_validate({**raw, "batch_size": None})  # full batch: checked every step
    TrialConfig.model_validate({**raw, "batch_size": 64})  # a batch of all n is full batch


@pytest.mark.parametrize("batch", [(), ("--batch-size", "16")])
def test_gdscope_train_records_the_accuracy_its_stop_rule_reads(monkeypatch, capsys, batch):
    code, out, err = run_cli(monkeypatch, capsys, *TINY, "--stop-accuracy", "0.2", *batch)
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "stopped" and result["steps"] < 40
    assert result["config"]["probes"]["accuracy"] == 1
    steps, accuracy = result["records"]["accuracy"]
    assert steps == list(range(result["steps"] + 1))  # every step, the stop's included
    assert max(accuracy[:-1]) < 0.2 <= accuracy[-1]  # it stopped at the first step it held


def test_gdscope_train_help_lists_every_loss_and_device(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli(monkeypatch, capsys, "train", "--help")
    assert code == 0
    losses = typing.get_args(TrialConfig.model_fields["loss"].annotation)
    assert " | ".join(losses) in out
    assert "cpu | cuda | cuda:N | mps" in out
