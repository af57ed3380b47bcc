"""Hessian spectra of trained networks: ``td-analysis spectrum`` and the ``spectra.png`` figure.

* :func:`spectrum_report`: top-k eigenvalues (block Lanczos, exact to ``tol``), the trace
  (Hutch++ with a standard error, or exact) and optionally the smoothed spectral density (SLQ)
  of the Hessian of the mean cross-entropy over the selected parameters, through
  :class:`td_analysis.curvature.HessianOperator` (float64; any number of parameters: only
  Hessian-vector products).  ``distributed=True`` sums every product over the ranks of
  ``torch.distributed`` (this process holds its shard of the data).
* :func:`spectra_figure_data`: for each network, the spectrum of the whole Hessian, of each
  layer's block and of the block H_SS of the weights magnitude pruning removes, with the bound
  ½dᵀHd ≤ ½λ_max(H_SS)‖d‖² and the share of the top eigenvectors' mass on the pruned set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from td_analysis.curvature import (
    HessianOperator,
    hessian_trace,
    pruned_spectrum,
    restrict,
    spectral_density,
    top_eigenpairs,
)
from td_analysis.nets.models import flatten_masks
from td_analysis.utils.moved import moved_names

__all__ = [
    "SpectrumReport",
    "spectrum_report",
    "report_text",
    "flat_mask",
    "layer_groups",
    "spectra_figure_data",
    "spectra_outputs",  # noqa: F822 - from td_analysis.pipelines.toy, looked up when asked for
    "spectrum_stem",  # noqa: F822 - from td_analysis.cli.spectrum, looked up when asked for
    "add_commands",  # noqa: F822 - from td_analysis.cli.spectrum, looked up when asked for
]


@dataclass
class SpectrumReport:
    """What ``td-analysis spectrum`` prints and writes (``as_dict`` → the JSON file)."""

    params: list[str]
    num_params: int
    num_examples: int
    which: str
    tol: float
    eigenvalues: list[float]
    trace: float
    trace_se: float
    trace_method: str
    grid: list[float] | None = None
    density: list[float] | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def spectrum_report(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    *,
    params: str | Sequence[str] | None = None,
    k: int = 20,
    which: str = "largest",
    tol: float = 1e-6,
    trace_method: str = "hutch++",
    trace_matvecs: int = 99,
    density: bool = False,
    num_probes: int = 8,
    num_steps: int = 64,
    seed: int = 0,
    num_examples: int | None = None,
    distributed: bool = False,
    progress: bool = False,
    block_size: int | None = None,
) -> SpectrumReport:
    """Eigenvalues, trace and (optionally) density of H = ∇²_θ (1/N) Σₙ CE(f_θ(xₙ), yₙ).

    ``params``: names (or ``"weights"``; default all).  ``num_examples``: the global N to report
    when ``data`` is one rank's shard.  ``block_size``: vectors per product of the eigensolver
    (:func:`~td_analysis.curvature.top_eigenpairs`).  Every rank of a distributed run gets the
    same numbers.
    """
    t0 = time.perf_counter()
    H = HessianOperator(
        model.eval(),
        data,
        params=params,
        dtype=torch.float64,
        distributed=distributed,
        progress=progress,
    )
    P = H.shape[0]
    if not 1 <= k < P:
        raise ValueError(f"--k must be between 1 and {P - 1} (the selection has {P} parameters)")
    evals, _ = top_eigenpairs(
        H, k, which=which, tol=tol, seed=seed, progress=progress, block_size=block_size
    )
    trace, se = hessian_trace(H, method=trace_method, num_matvecs=trace_matvecs, seed=seed)
    grid = dens = None
    if density:
        g, d = spectral_density(
            H, num_probes=num_probes, num_steps=num_steps, seed=seed, progress=progress
        )
        grid, dens = g.tolist(), d.tolist()
    return SpectrumReport(
        params=list(H.param_names),
        num_params=P,
        num_examples=int(num_examples if num_examples is not None else len(data[1])),
        which=which,
        tol=tol,
        eigenvalues=evals.cpu().tolist(),
        trace=trace,
        trace_se=se,
        trace_method=trace_method,
        grid=grid,
        density=dens,
        seconds=time.perf_counter() - t0,
    )


def report_text(report: SpectrumReport, title: str = "") -> str:
    """The printed report: one line per eigenvalue, then the trace."""
    order = {"largest": "largest", "smallest": "smallest", "magnitude": "largest |λ|"}[report.which]
    names = ", ".join(report.params)
    lines = [
        f"{title}Hessian of the mean cross-entropy over {report.num_examples:,} examples, "
        f"{report.num_params:,} parameters ({names}), float64",
        f"top {len(report.eigenvalues)} eigenvalues ({order}; residual ≤ {report.tol:g}·‖H‖):",
    ]
    lines += [f"  λ{i + 1:<3d} {v: .10g}" for i, v in enumerate(report.eigenvalues)]
    if report.trace_method == "exact":
        lines.append(f"trace (exact): {report.trace:.10g}")
    else:
        lines.append(
            f"trace ({report.trace_method}): {report.trace:.6g} ± {report.trace_se:.2g} "
            "(standard error)"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figure data
def flat_mask(H: HessianOperator, masks: Mapping[str, Tensor]) -> Tensor:
    """A (P,) boolean mask over θ of ``H`` from per-parameter masks (absent names: False)."""
    return flatten_masks(H.specs, masks)


def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Parameter names of each ``nn.Linear`` layer (weight and bias), keyed by the layer name."""
    groups = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            prefix = f"{name}." if name else ""
            groups[name or "linear"] = [
                f"{prefix}{p}" for p, _ in module.named_parameters(recurse=False)
            ]
    return groups


def _spectrum(op, k: int, probes: int, steps: int, tol: float, seed: int) -> tuple[dict, Tensor]:
    P = op.shape[0]
    evals, evecs = top_eigenpairs(op, min(k, P - 1), tol=tol, seed=seed)
    grid, dens = spectral_density(op, num_probes=probes, num_steps=min(steps, P), seed=seed)
    out = {
        "num_params": P,
        "eigenvalues": evals.cpu().tolist(),
        "grid": grid.tolist(),
        "density": dens.tolist(),
    }
    return out, (evals, evecs)


def spectra_figure_data(
    models: Mapping[str, nn.Module],
    inputs: Tensor,
    targets: Tensor,
    masks: Mapping[str, Mapping[str, Tensor]],
    *,
    k: int = 5,
    tol: float = 1e-5,
    num_probes: int = 2,
    num_steps: int = 32,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict]:
    """Per network: spectra of the whole Hessian, each layer's block and the pruned block H_SS.

    ``masks[name]`` are the pruning masks (True = removed) of network ``name``.  Each spectrum
    is ``{"num_params", "eigenvalues" (top k, largest first, residual ≤ ``tol``·‖H‖), "grid",
    "density"}``; ``"pruned_summary"`` holds :class:`td_analysis.curvature.PrunedSpectrum` as a
    dict (λ_max of H_SS, the Rayleigh bound on ½dᵀHd, the top eigenvectors' mass on S).
    ``dtype``: of the Hessian-vector products (default: the model's; the Lanczos basis in that
    precision, the projected problems and eigenvalues in float64).
    """
    from td_analysis.utils.progress import progress_bar

    out = {}
    for name, model in progress_bar(models.items(), desc="spectra", disable=not progress):
        model = model.eval()
        H = HessianOperator(model, (inputs, targets), dtype=dtype)
        whole, pairs = _spectrum(H, k, num_probes, num_steps, tol, seed)
        entry = {"whole": whole, "layers": {}}
        for layer, names in layer_groups(model).items():
            HL = HessianOperator(model, (inputs, targets), params=names, dtype=dtype)
            entry["layers"][layer] = _spectrum(HL, k, num_probes, num_steps, tol, seed)[0]
        mask = flat_mask(H, masks[name])
        entry["pruned"] = _spectrum(restrict(H, mask), k, num_probes, num_steps, tol, seed)[0]
        summary = pruned_spectrum(
            H,
            mask,
            theta=H.theta,
            eigenpairs=pairs,
            lambda_max=entry["pruned"]["eigenvalues"][0],
        )
        entry["pruned_summary"] = summary.as_dict()
        out[name] = entry
    return out


#: Examples of the figure split the ``spectra.png`` Hessians are taken over (the first ones).
FIGURE_EXAMPLES = 2000
FIGURE_NETWORKS = {"none": "none", "targeted-weight": "targeted dropout"}


#: the ``td-analysis spectrum`` command (``spectrum_stem``, ``_cmd_spectrum``, ``add_commands``)
#: lives in :mod:`td_analysis.cli.spectrum`; importable from here too, looked up when asked for
#: so that the analysis does not depend on its command line
#: (``spectra_outputs``, the ``spectra.png`` step of ``reproduce``, draws with
#: :mod:`td_analysis.report.plotting` and lives in :mod:`td_analysis.pipelines.toy`)
_ELSEWHERE = {
    "spectrum_stem": ("td_analysis.cli.spectrum", "spectrum_stem"),
    "_cmd_spectrum": ("td_analysis.cli.spectrum", "_cmd_spectrum"),
    "_SPECTRUM_OPTIONS": ("td_analysis.cli.spectrum", "_SPECTRUM_OPTIONS"),
    "add_commands": ("td_analysis.cli.spectrum", "add_spectrum_command"),
    "spectra_outputs": ("td_analysis.pipelines.toy", "spectra_outputs"),
}

__getattr__ = moved_names(__name__, _ELSEWHERE)
