"""Report text (markdown) of the experiments' tables, apart from the code computing the numbers.

The text lives in :mod:`td_analysis.report`, one module per output family
(:mod:`~td_analysis.report.common`, :mod:`~td_analysis.report.table1`,
:mod:`~td_analysis.report.fashion`, :mod:`~td_analysis.report.training_length`); this module
re-exports every name it had before the split (issue #20), so ``reports.X`` keeps working.

Every function takes the numbers (as written to the JSON results) and returns markdown; nothing
there computes a result or names a data set: the experiment passes the description in.  The only
arithmetic is the report's statistics over seeds (mean ± std, paired differences with t
intervals from :mod:`td_analysis.analysis.statistics`), and every sentence that states a result is
written from those numbers: a difference only where its interval excludes zero
(:func:`~td_analysis.report.common.claim`), else "no difference within the seeds' spread".
"""

from __future__ import annotations

from td_analysis.analysis.statistics import PairedDifference as PairedDifference
from td_analysis.analysis.statistics import paired_difference as paired_difference
from td_analysis.report.common import (
    LEVEL,
    NO_DIFFERENCE,
    README_COMMAND,
    Metric,
    claim,
    format_mean_std,
    generated_marker,
    interval_text,
    mean_std,
    paired_curve,
    replace_generated,
)
from td_analysis.report.fashion import (
    CLAIM_KS,
    FASHION_ACCURACY,
    FASHION_CONTROLS,
    FASHION_FIGURES,
    FASHION_NAMES,
    FASHION_README_CLAIM_KS,
    FASHION_README_COLUMNS,
    FASHION_README_KS,
    FASHION_README_PAIRS,
    fashion_claims,
    fashion_comparisons,
    fashion_difference_curve,
    fashion_difference_panels,
    fashion_differences_markdown,
    fashion_pruning_markdown,
    fashion_readme,
    pruning_cell,
    pruning_columns,
    readme_fashion_results,
)
from td_analysis.report.table1 import (
    TOY_METRICS,
    TOY_NAMES,
    metric_values,
    protocol_study_section,
    readme_toy_results,
    table1_markdown,
    toy_claims,
    toy_comparisons,
    toy_difference_curves,
    toy_names,
    toy_split_markdown,
)
from td_analysis.report.training_length import (
    FASHION_LENGTH_PANELS,
    LENGTH_ACCURACY,
    LENGTH_PANELS,
    fashion_length_steps,
    fashion_training_length_claims,
    fashion_training_length_markdown,
    readme_training_length,
    training_length_claims,
)

__all__ = [
    "mean_std",
    "format_mean_std",
    "Metric",
    "TOY_METRICS",
    "NO_DIFFERENCE",
    "metric_values",
    "interval_text",
    "claim",
    "paired_curve",
    "toy_difference_curves",
    "toy_names",
    "toy_comparisons",
    "toy_split_markdown",
    "toy_claims",
    "table1_markdown",
    "pruning_columns",
    "pruning_cell",
    "fashion_pruning_markdown",
    "FASHION_NAMES",
    "FASHION_ACCURACY",
    "CLAIM_KS",
    "fashion_comparisons",
    "fashion_difference_curve",
    "fashion_claims",
    "fashion_differences_markdown",
    "fashion_difference_panels",
    "FASHION_FIGURES",
    "README_COMMAND",
    "readme_toy_results",
    "readme_fashion_results",
    "replace_generated",
    "generated_marker",
    "training_length_claims",
    "fashion_training_length_claims",
    "fashion_training_length_markdown",
    "readme_training_length",
    "fashion_readme",
    # public before the split too, though not listed then
    "LEVEL",
    "TOY_NAMES",
    "FASHION_CONTROLS",
    "FASHION_README_COLUMNS",
    "FASHION_README_PAIRS",
    "FASHION_README_CLAIM_KS",
    "FASHION_README_KS",
    "LENGTH_PANELS",
    "LENGTH_ACCURACY",
    "FASHION_LENGTH_PANELS",
    "fashion_length_steps",
    "protocol_study_section",
]
