"""The Lightning callback: a Trainer.fit recorded by the same monitor, stored and reported."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

pytest.importorskip("lightning")  # the `lightning` extra (in `dev`)

import lightning.pytorch as pl

import gdscope as gs
from _helpers import assert_close
from gdscope.cli import app
from gdscope.integrations.lightning import GdscopeMonitor
from gdscope.store import Store

STEPS = 20
pytestmark = pytest.mark.filterwarnings(
    # Lightning's own use of torch.utils._pytree, deprecated in recent torch
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning",
)


class TinyModule(pl.LightningModule):
    def __init__(self, fail_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.fail_at = fail_at

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise RuntimeError("boom in training_step")
        x, y = batch
        return gs.losses.mse(self(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _loader():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=g)


def _fit(module, callback):
    trainer = pl.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module, _loader())
    return trainer


def test_callback_records_the_fit_and_the_report_shows_it(tmp_path):
    probes = {"loss": 1, "sharpness": 5}
    callback = GdscopeMonitor(
        gs.losses.mse, _loader(), probes=probes, results=tmp_path, run="lit", probe_size=32
    )
    module = TinyModule()
    _fit(module, callback)
    mon = callback.monitor
    assert mon is not None and mon.status == "completed", mon and mon.trace.reason
    assert module.training  # measuring in eval mode put the module back

    store = Store(tmp_path, read_only=True)
    (trial,) = store.trials("lit", "monitor")
    assert trial["status"] == "completed" and trial["steps"] == STEPS
    assert trial["config"]["model"]["class"] == "TinyModule"
    assert trial["config"]["probe_set"] == {"source": "DataLoader", "examples": 32}
    (record,) = store.records("lit", "monitor")
    steps, lr = record.series["lr"]
    assert steps.tolist() == list(range(STEPS + 1))  # step 0 before any update, then each one
    assert lr[0] == 0.1
    assert_close(lr[-1], 0.1 * 0.5**4, rtol=1e-6, atol=1e-12)
    assert np.all(np.diff(lr) <= 0)
    assert record.series["sharpness"][0].tolist() == [0, 5, 10, 15, 20]
    assert record.series["loss"][0].tolist() == list(range(STEPS + 1))

    runner = CliRunner()
    shown = runner.invoke(app, ["show", str(tmp_path)])
    assert shown.exit_code == 0 and "lit (monitor): 1 completed" in shown.output
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 0
    page = (tmp_path / "report.html").read_text()
    assert "lit" in page and "2/η of the recorded lr" in page


def test_an_exception_in_fit_is_recorded_with_the_series_so_far(tmp_path):
    callback = GdscopeMonitor(gs.losses.mse, _loader(), results=tmp_path, run="lit")
    with pytest.raises(RuntimeError, match="boom in training_step"):
        _fit(TinyModule(fail_at=7), callback)
    (trial,) = Store(tmp_path, read_only=True).trials()
    assert trial["status"] == "failed"
    assert trial["reason"] == "RuntimeError: boom in training_step after step 7"
    (record,) = Store(tmp_path, read_only=True).records()
    assert record.series["loss"][0].tolist() == list(range(8))


def test_bad_input_fails_before_fit(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'sharpness'"):
        GdscopeMonitor(gs.losses.mse, _loader(), probes={"sharpnes": 5}, results=tmp_path)
    with pytest.raises(ValueError, match="probe_batch must be an \\(x, y\\) pair"):
        GdscopeMonitor(gs.losses.mse, {"x": torch.ones(2)}, results=tmp_path)
    assert not list(tmp_path.iterdir())


def _trainer(callback, steps, **options):
    return pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        **{"enable_checkpointing": False, **options},
    )


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_true_precision_probes_the_set_in_the_modules_dtype(precision):
    callback = GdscopeMonitor(gs.losses.mse, _loader(), probes={"loss": 1}, results=None)
    module = TinyModule()
    _trainer(callback, 3, precision=precision).fit(module, _loader())
    mon = callback.monitor
    assert mon is not None and mon.status == "completed", mon and mon.trace.reason
    assert mon.data[0].dtype == next(module.parameters()).dtype != torch.float32
    assert mon.trace.series("loss")[0].tolist() == [0, 1, 2, 3]


def test_the_training_loader_yields_the_same_batches_with_the_callback():
    seen = {}

    class Recording(TinyModule):
        def training_step(self, batch, batch_idx):
            seen.setdefault(self.tag, []).append(float(batch[0].sum()))
            return super().training_step(batch, batch_idx)

    for tag in ("alone", "monitored"):
        module, loader = Recording(), _loader()
        module.tag = tag
        callback = GdscopeMonitor(gs.losses.mse, loader, probe_size=16, results=None)
        _trainer(callback if tag == "monitored" else pl.Callback(), 10).fit(module, loader)
    assert seen["alone"] == seen["monitored"]


@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")  # Lightning's
def test_a_resumed_fit_warns_that_its_baselines_are_the_checkpoint(tmp_path):
    probes = {"loss": 1, "dist_from_init": 2}
    first = GdscopeMonitor(gs.losses.mse, _loader(), probes=probes, results=tmp_path, run="r")
    trainer = _trainer(first, 8, enable_checkpointing=True, default_root_dir=tmp_path / "a")
    trainer.fit(TinyModule(), _loader())
    checkpoint = trainer.checkpoint_callback.best_model_path  # pyright: ignore[reportOptionalMemberAccess]
    second = GdscopeMonitor(gs.losses.mse, _loader(), probes=probes, results=tmp_path, run="r")
    with pytest.warns(UserWarning, match="training resumes at step 8"):  # one epoch: 8 batches
        _trainer(second, 12, enable_checkpointing=True, default_root_dir=tmp_path / "b").fit(
            TinyModule(), _loader(), ckpt_path=checkpoint
        )
    assert second.monitor is not None
    assert second.monitor.trace.series("loss")[0].tolist() == [8, 9, 10, 11, 12]


def test_the_preconditioned_sharpness_reads_the_first_optimizer():
    class AdamModule(TinyModule):
        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    probes = {"preconditioned_sharpness": 2}
    callback = GdscopeMonitor(gs.losses.mse, _loader(), probes=probes, results=None)
    _trainer(callback, 4).fit(AdamModule(), _loader())
    assert callback.monitor is not None and callback.monitor.status == "completed"
    steps, ratio = callback.monitor.trace.series("preconditioned_sharpness_ratio")
    assert steps.tolist() == [2, 4] and all(r > 0 for r in ratio)
