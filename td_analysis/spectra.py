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

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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
from td_analysis.io import atomic_write_json

__all__ = [
    "SpectrumReport",
    "spectrum_report",
    "report_text",
    "flat_mask",
    "layer_groups",
    "spectra_figure_data",
    "spectra_outputs",
    "spectrum_stem",
    "add_commands",
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
    unknown = sorted(set(masks) - set(H.param_names))
    if unknown:
        raise ValueError(f"masks name parameters {unknown} outside the operator's {H.param_names}")
    parts = []
    for name, sl in H.offsets.items():
        m = masks.get(name)
        n = sl.stop - sl.start
        parts.append(torch.zeros(n, dtype=torch.bool) if m is None else m.reshape(-1).cpu().bool())
    return torch.cat(parts)


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
    from td_analysis.progress import progress_bar

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


def spectra_outputs(run) -> dict:
    """``spectra.png`` of ``td-analysis reproduce`` and its numbers (for ``table1.json``).

    ``run``: the toy pipeline's :class:`td_analysis.experiments.ToyRun`.  Seed 0 of the
    unregularised and the targeted-dropout network; H of the mean cross-entropy over the first
    :data:`FIGURE_EXAMPLES` images of the figure split; the pruned set is the weight-pruning mask
    at the Table 1 fraction (both layers).
    """
    from td_analysis import plotting
    from td_analysis.pruning import pruning_masks

    settings = run.settings
    x, y = run.evald[settings.figure_split]
    x, y = x[:FIGURE_EXAMPLES], y[:FIGURE_EXAMPLES]
    models = {label: run.models[reg][0] for reg, label in FIGURE_NETWORKS.items()}
    masks = {
        label: pruning_masks(model, settings.prune_fraction, "weight")
        for label, model in models.items()
    }
    data = spectra_figure_data(models, x, y, masks)
    fig = plotting.plot_spectra(
        data,
        title=f"Hessian spectra (SLQ densities, dotted: top eigenvalues) of the mean "
        f"cross-entropy over {len(y):,} {settings.figure_split} images; pruned set: "
        f"{settings.prune_fraction:.0%} weight pruning",
    )
    plotting.save_figure(fig, run.out_dir / "spectra.png", formats=("png",))
    return {
        label: {
            "top_eigenvalues": entry["whole"]["eigenvalues"],
            "layers": {k: v["eigenvalues"] for k, v in entry["layers"].items()},
            "pruned_set": entry["pruned_summary"],
        }
        for label, entry in data.items()
    }


# ----------------------------------------------------------------------------- CLI
#: ``spectrum`` options that change the result, as (name in the file name, option dest)
_SPECTRUM_OPTIONS = (
    ("limit", "limit"),
    ("k", "k"),
    ("", "which"),
    ("tol", "tol"),
    ("block", "block_size"),
    ("trace-", "trace_method"),
    ("matvecs", "trace_matvecs"),
    ("probes", "probes"),
    ("steps", "steps"),
    ("seed", "seed"),
)


def spectrum_stem(args: argparse.Namespace) -> str:
    """``--out`` (whole stem), else ``<checkpoint>-spectrum-<split>[-<params>][-<option><value>
    …]`` with every option that changes the numbers and differs from its default
    (:func:`td_analysis.cliargs.command_stem`); probes and steps only with ``--density``."""
    from td_analysis import cliargs
    from td_analysis.cli import _parser_defaults

    defaults = _parser_defaults(args)
    options: list[tuple[str, object]] = [("", args.split), ("", args.params)]
    for name, dest in _SPECTRUM_OPTIONS:
        value = getattr(args, dest)
        if dest in ("probes", "steps") and not args.density:
            value = None
        options.append((name, None if value == defaults.get(dest) else value))
    options.append(("density", bool(args.density)))
    model = getattr(args, "model", None)
    if model:
        options.append(("model-", model.replace(":", ".")))
    extensions = (".json", ".png") if args.density else (".json",)
    return cliargs.command_stem(args, "spectrum", options, extensions)


def _cmd_spectrum(args: argparse.Namespace) -> int:
    from td_analysis import plotting
    from td_analysis.cli import load_checked_checkpoint
    from td_analysis.curvature import distributed as dist_utils
    from td_analysis.training import load_data

    stem = spectrum_stem(args)  # whole stem; .json (and .png) checked writable before the work
    json_path, png_path = Path(f"{stem}.json"), Path(f"{stem}.png")
    rank, world = 0, 1
    if args.distributed:
        try:
            rank, world = dist_utils.init_from_env()
        except RuntimeError as exc:  # not started by torchrun: one line, exit 2
            raise ValueError(f"--distributed: {exc}") from exc
    try:
        ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
        if hasattr(ckpt, "factory"):  # --model: images of --dataset
            from td_analysis.usermodels import model_data

            x, y = model_data(ckpt, getattr(args, "dataset", None), args.split, args.data_dir)
        else:
            x, y = load_data(
                ckpt.config, args.split, root=args.data_dir, dataset=getattr(args, "dataset", None)
            )
        if args.limit is not None:
            x, y = x[: args.limit], y[: args.limit]
        n = len(y)
        if args.distributed:
            part = dist_utils.shard(n, rank, world)
            x, y = x[part], y[part]
        params = None
        if args.params:
            params = args.params if args.params == "weights" else args.params.split(",")
        report = spectrum_report(
            ckpt.model,
            (x, y),
            params=params,
            k=args.k,
            which=args.which,
            tol=args.tol,
            trace_method=args.trace_method,
            trace_matvecs=args.trace_matvecs,
            density=args.density,
            num_probes=args.probes,
            num_steps=args.steps,
            seed=args.seed,
            num_examples=n,
            distributed=args.distributed,
            progress=not args.quiet and rank == 0,
            block_size=args.block_size,
        )
        if rank != 0:
            return 0
        where = f" on {world} processes" if args.distributed else ""
        print(report_text(report, f"{args.checkpoint} ({args.split}{where}): "))
        atomic_write_json(json_path, report.as_dict())
        print(f"wrote {json_path}")
        if args.density:
            fig = plotting.plot_spectral_density(
                {ckpt.config.regulariser.label: (report.grid, report.density)},
                eigenvalues={ckpt.config.regulariser.label: report.eigenvalues},
                title=f"Hessian spectral density (SLQ, {args.probes} probes × {args.steps} "
                f"steps), {report.num_params:,} parameters, {n:,} {args.split} examples",
            )
            for path in plotting.save_figure(fig, png_path, formats=("png",)):
                print(f"wrote {path}")
        return 0
    finally:
        if args.distributed and dist_utils.is_initialized():
            import torch.distributed as dist

            dist.destroy_process_group()


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``spectrum`` on the ``td-analysis`` parser (defined in :mod:`td_analysis.cli`,
    which builds its parser without importing torch)."""
    from td_analysis.cli import add_spectrum_command

    add_spectrum_command(sub)
