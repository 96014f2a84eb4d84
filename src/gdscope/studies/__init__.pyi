from .claims import CLAIM_KINDS
from .errors import StudyError
from .reducers import Reducer, reduce_record
from .spec import Study, judge_study, load_study
from .table import TrialRecord, flatten_config
from .verdict import Verdict

__all__ = [
    "CLAIM_KINDS",
    "Reducer",
    "Study",
    "StudyError",
    "TrialRecord",
    "Verdict",
    "flatten_config",
    "judge_study",
    "load_study",
    "reduce_record",
]
