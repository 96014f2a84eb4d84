"""Names and types of the lazily loaded exports of gdscope (see __init__.py)."""

from . import (
    data,
    ensemble,
    functional,
    losses,
    models,
    optim,
    probes,
    report,
    runners,
    stats,
    store,
)
from .api import StudyPlan, StudyResult, plan_study, run_studies, run_study, verify
from .config import DataConfig, ModelConfig, OptimizerConfig, StopConfig, TrialConfig
from .store import Store
from .training import PROBES, Stop, Trace, train
from .trial import Trial, build_trial, run_trial

__version__: str

__all__ = [
    "PROBES",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "Stop",
    "StopConfig",
    "Store",
    "StudyPlan",
    "StudyResult",
    "Trace",
    "Trial",
    "TrialConfig",
    "__version__",
    "build_trial",
    "data",
    "ensemble",
    "functional",
    "losses",
    "models",
    "optim",
    "plan_study",
    "probes",
    "report",
    "run_studies",
    "run_study",
    "run_trial",
    "runners",
    "stats",
    "store",
    "train",
    "verify",
]
