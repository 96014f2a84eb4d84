"""Studies: claims of optimization theory declared as data, expanded into trials, and judged.

Pure data and judgement: nothing here trains, imports torch, or writes a file.

* :func:`load_study` / :class:`Study` — a study file (TOML) with its sweep, scales and claims.
* :class:`TrialRecord` — what one finished trial left behind, the judge's input.
* :func:`judge_study` / :class:`Verdict` — PASS / FAIL / INCONCLUSIVE with statistic and evidence.
"""

from gdscope.studies.claims import CLAIM_KINDS, judge_study
from gdscope.studies.errors import StudyError
from gdscope.studies.reducers import Reducer, reduce_record
from gdscope.studies.spec import Study, load_study
from gdscope.studies.table import TrialRecord, flatten_config
from gdscope.studies.verdict import Verdict

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
