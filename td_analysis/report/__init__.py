"""Report text (markdown) of the experiments, apart from the code computing the numbers.

One module per output family: :mod:`~td_analysis.report.common` (mean ± std, the paired-difference
sentences, README blocks), :mod:`~td_analysis.report.table1` (the toy ``table1.md``),
:mod:`~td_analysis.report.fashion` (the fashion-mlp ``pruning.md`` and ``README.md``),
:mod:`~td_analysis.report.fashion_files` (writing those files from the JSON),
:mod:`~td_analysis.report.training_length` (the training-length studies),
:mod:`~td_analysis.report.protocol_study` (the protocol-study section of ``table1.md``) and
:mod:`~td_analysis.report.resnet` (the ResNet ``pruning.md`` and ``README.md``).
:mod:`td_analysis.report.compat` re-exports the text functions under their old names.
"""
