"""gdscope: measure what deep-learning optimization theory predicts about training, and judge it.

>>> import gdscope as gs
>>> x, y = gs.data.sphere(n=24, d=8, seed=0)
>>> net = gs.models.two_layer(d_in=8, width=512, seed=0)
>>> opt = gs.optim.make_optimizer("gd", net, lr=1.0)
>>> trace = gs.train(net, opt, (x, y), steps=10)
>>> trace.status
'completed'
"""

from gdscope import data, functional, losses, models, optim, probes
from gdscope.api import StudyResult, run_study, verify
from gdscope.config import DataConfig, ModelConfig, OptimizerConfig, StopConfig, TrialConfig
from gdscope.store import Store
from gdscope.training import PROBES, Stop, Trace, train
from gdscope.trial import Trial, build_trial, run_trial

__version__ = "0.1.0"

__all__ = [
    "PROBES",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "Stop",
    "StopConfig",
    "Store",
    "StudyResult",
    "Trace",
    "Trial",
    "TrialConfig",
    "__version__",
    "build_trial",
    "data",
    "functional",
    "losses",
    "models",
    "optim",
    "probes",
    "run_study",
    "run_trial",
    "train",
    "verify",
]
