"""``python -m td_analysis.cli``: the ``td-analysis`` command."""

from td_analysis.cli import entry

if __name__ == "__main__":  # pragma: no cover
    entry()
