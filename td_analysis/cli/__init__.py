"""The ``td-analysis`` command line: download, train, prune, reproduce the paper's figure/table.

The parser is built from light modules only (:mod:`td_analysis.utils.cliargs`,
:mod:`td_analysis.catalog.names`): ``--help`` and every argument error answer before torch, scipy or
matplotlib is imported; each command imports what it needs when it runs.

The package: :mod:`~td_analysis.cli.parser` (parser, :func:`main`),
:mod:`~td_analysis.cli.options` (shared option groups), :mod:`~td_analysis.cli.common` (checkpoint,
data and row-output helpers) and one module per command family (``download``, ``train``,
``prune`` with ``estimate``, ``coadaptation``, ``reproduce``, ``spectrum``).
"""

from __future__ import annotations

from td_analysis.cli.coadaptation import coadaptation_bytes, display_matrix
from td_analysis.cli.common import lazy_command, load_checked_checkpoint, parser_defaults
from td_analysis.cli.options import add_model_option
from td_analysis.cli.parser import build_parser, entry, main
from td_analysis.cli.reproduce import add_reproduce_command
from td_analysis.cli.spectrum import add_spectrum_command
from td_analysis.cli.train import config_from_args, task_from_args
from td_analysis.utils.cliargs import DATA_HELP, output_stem

__all__ = [
    "main",
    "entry",
    "build_parser",
    "output_stem",
    "DATA_HELP",
    "load_checked_checkpoint",
    "config_from_args",
    "task_from_args",
    "add_model_option",
    "add_reproduce_command",
    "add_spectrum_command",
    "coadaptation_bytes",
    "display_matrix",
    "lazy_command",
    "parser_defaults",
    "_lazy",
    "_parser_defaults",
]

# their names before they became public (session 19); still importable from here
_lazy = lazy_command
_parser_defaults = parser_defaults
