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
from .data.registry import register_dataset
from .diagnose import Diagnosis, diagnose
from .integrations import monitor
from .registration import register_model
from .store import Store
from .training import PROBES, Stop, Trace, train
from .training.user_probes import register_probe
from .trials.trial import Trial, build_trial, run_trial

__version__: str

__all__ = [
    "PROBES",
    "DataConfig",
    "Diagnosis",
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
    "diagnose",
    "ensemble",
    "functional",
    "losses",
    "models",
    "monitor",
    "optim",
    "plan_study",
    "probes",
    "register_dataset",
    "register_model",
    "register_probe",
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
