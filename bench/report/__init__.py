"""`ftbench report`: REPORT.md and its plots, built only from result files (no torch needed).

load          result files -> one pandas frame, one row per run, with its comparison group
intervals     mean and 95% Student-t interval over seeds; paired differences
tables        cells and Markdown tables
winner        which objective wins a comparison, named only where the paired seeds say so
claims        the paper's claim against our measurement
plots         metric against views, metric against step time
cost_section  the cost results of `ftbench cost`
regime        the opening section: the regime map (who wins where, the fitted decision guide, validation)
build         the whole report (grouping and statistics are described there)
"""

from ..schema import PAPER_CLAIM, QUERY_TASK
from .build import ReportOutcome, build_report
from .claims import ceiling_note, claim_verdict
from .cost_section import load_cost_results
from .load import (
    QUERY_METRICS,
    LoadedResults,
    find_result_files,
    load_results_frame,
    load_run_results,
    results_frame,
)
from .tables import cell_interval, cell_values, fmt_difference, fmt_interval, paired_against_baseline, summary_table

__all__ = [
    "PAPER_CLAIM",
    "QUERY_METRICS",
    "QUERY_TASK",
    "LoadedResults",
    "ReportOutcome",
    "build_report",
    "ceiling_note",
    "cell_interval",
    "cell_values",
    "claim_verdict",
    "find_result_files",
    "fmt_difference",
    "fmt_interval",
    "load_cost_results",
    "load_results_frame",
    "load_run_results",
    "paired_against_baseline",
    "results_frame",
    "summary_table",
]
