#!/usr/bin/env bash
# Regenerate docs/verdicts.md: the whole catalogue at quick scale, then each study's paper scale
# under a time limit, into one results store; the page is generated from the store.
#
#   bash scripts/verdicts_doc.sh [RESULTS_DIR] [PAPER_LIMIT_S] [STUDY ...]
#
# RESULTS_DIR defaults to verdicts-results; PAPER_LIMIT_S (default 600, the 10 minutes on 2 CPU
# cores the catalogue allows a paper-scale run here) bounds each paper-scale run: a run that
# does not finish is stopped (its stored trials stay; its claims show NOT JUDGED) and listed in
# RESULTS_DIR/paper-times.tsv with its limit. STUDY ... restricts the paper-scale runs (default:
# every catalogue study). A rerun resumes: stored trials are not trained again. The page the store
# gives replaces those studies' rows and sections of docs/verdicts.md; the rows of studies not rerun
# keep their earlier measurement and date (scripts/verdicts_page.py). Last, each study file's
# estimated_cost is rewritten from the store (scripts/estimated_costs.py).
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:-verdicts-results}"
limit="${2:-600}"
shift $(( $# > 2 ? 2 : $# ))
gdscope=".venv/bin/gdscope"
"$gdscope" run --workers 2 --results "$results" --no-report
studies=("$@")
if [ ${#studies[@]} -eq 0 ]; then
    mapfile -t studies < <(ls src/gdscope/studies/catalog | sed 's/\.toml$//')
fi
for study in "${studies[@]}"; do
    start=$(date +%s)
    if timeout "$limit" "$gdscope" run "$study" --scale paper --workers 2 --results "$results" \
        --no-report > "$results/paper-$study.log" 2>&1; then
        outcome="finished"
    else
        outcome="stopped or failed (exit $?)"
    fi
    printf '%s\t%s\t%s s\t%s\n' "$study" "$outcome" "$(( $(date +%s) - start ))" "$(date -u +%F)" \
        >> "$results/paper-times.tsv"
done
"$gdscope" report "$results" --markdown -o "$results/verdicts.md"
.venv/bin/python scripts/verdicts_page.py "$results/verdicts.md" --into docs/verdicts.md
.venv/bin/python scripts/estimated_costs.py "$results"  # each study file's estimated_cost
