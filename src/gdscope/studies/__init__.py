"""Studies: claims of optimization theory declared as data, expanded into trials, and judged.

Pure data and judgement: nothing here trains, imports torch, or writes a file.

* :func:`load_study` / :class:`Study` — a study file (TOML) with its sweep, scales and claims.
* :class:`TrialRecord` — what one finished trial left behind, the judge's input.
* :func:`judge_study` / :class:`Verdict` — PASS / FAIL / INCONCLUSIVE with statistic and evidence.
"""

# Exports load on first use (names and types: __init__.pyi), so that
# reading a store or writing a report never imports torch.
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
