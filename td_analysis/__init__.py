"""td_analysis: make the targeted-dropout paper measurable.

Data flows one way: ``data`` → ``models`` → ``dropout``/``training`` → ``pruning`` →
``curvature`` → ``coadaptation``/``taylor`` → ``plotting`` → ``cli``.
"""

__version__ = "0.1.0"

# fixed CPU kernels (AVX2 paths of torch and MKL) before torch runs anything: the same results
# bit for bit on any x86-64 machine with AVX2 (td_analysis.reproducibility explains)
from td_analysis.reproducibility import pin_cpu_kernels as _pin_cpu_kernels  # noqa: E402

_pin_cpu_kernels()
