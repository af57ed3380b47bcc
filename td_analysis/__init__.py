"""td_analysis: make the targeted-dropout paper measurable.

Data flows one way: ``data`` → ``models`` → ``dropout``/``training`` → ``pruning`` →
``curvature`` → ``coadaptation``/``taylor`` → ``plotting`` → ``cli``.
"""

__version__ = "0.1.0"
