"""``td-analysis coadaptation``: the θᵀ⊙H⊙θ matrix of a checkpoint (exact or pooled), its
picture, and the memory check made before any Hessian product."""

from __future__ import annotations

import argparse
from pathlib import Path

from td_analysis.cli.common import load_for_analysis
from td_analysis.utils import cliargs

EXACT_LIMIT = 4096  # `coadaptation` pools larger parameter sets unless --bins says otherwise
POOLED_BINS = 256


def cmd_coadaptation(args: argparse.Namespace) -> int:
    import torch

    from td_analysis.analysis.coadaptation import (
        block_summary,
        magnitude_order,
        ordered_coadaptation,
        pooled_block_summary,
        pooled_coadaptation,
        pruned_set,
    )
    from td_analysis.curvature import hessian
    from td_analysis.report import plotting

    out = Path(_coadaptation_stem(args) + ".png")  # checked writable before the Hessian
    ckpt, x, y = load_for_analysis(args)
    params = args.params if args.params == "weights" else args.params.split(",")
    order = magnitude_order(ckpt.model, params)
    bins = args.bins
    if bins is None and order.size > EXACT_LIMIT:
        bins = POOLED_BINS
        print(
            f"{order.size:,} parameters: more than {EXACT_LIMIT:,}, so C is pooled into "
            f"{bins} × {bins} block sums (--bins) instead of the full {order.size:,}² matrix"
        )
    if bins is not None and not 1 <= bins <= order.size:
        raise ValueError(f"--bins must be between 1 and the {order.size} selected parameters")
    _check_matrix_memory(bins or order.size, order.size, "--bins" if bins else "--params", bins)
    pruned = pruned_set(ckpt.model, order, args.gamma, "lowest")
    if bins is None:
        H = hessian(
            ckpt.model,
            x,
            y,
            params=order.names,
            reduction=args.reduction,
            dtype=torch.float64,
            progress=not args.quiet,
        )
        C = ordered_coadaptation(order, H)
        del H  # C alone from here on (the budget counts both only while C is made)
        summary = block_summary(C, pruned[order.order])
        what = f"θᵀ⊙H⊙θ over {', '.join(order.names)} ({order.size} parameters)"
    else:
        C = pooled_coadaptation(
            ckpt.model, x, y, order, bins, reduction=args.reduction, progress=not args.quiet
        )
        summary = pooled_block_summary(ckpt.model, x, y, order, pruned, reduction=args.reduction)
        what = (
            f"θᵀ⊙H⊙θ over {', '.join(order.names)} ({order.size:,} parameters) in "
            f"{bins} × {bins} block sums by decreasing |θ|"
        )
    print(f"{what}, H of the {args.reduction} cross-entropy over {len(y)} {args.split} images")
    for key, value in summary.as_dict().items():
        if value == value:  # the |C| shares are NaN (unknown) for pooled views
            print(f"  {key:>26}: {value:.6g}")
    title, vmax = ckpt.config.regulariser.label, args.vmax
    if bins is not None:
        title += f": {bins} × {bins} block sums"
    size = C.shape[0]
    C = display_matrix(C)  # at most DISPLAY_BINS² pixels: a picture cannot show more
    if C.shape[0] < size:
        title += f", shown as {C.shape[0]} × {C.shape[0]} sums"
    if bins is not None and vmax is None:  # the few bins of large weights wash out the rest
        vmax = plotting.symmetric_limit(C, quantile=0.99)
        title += ", colours clipped at the 99th percentile"
    fig = plotting.plot_coadaptation(C, vmax=vmax, gamma=args.gamma, title=title)
    for path in plotting.save_figure(fig, out, formats=("png",)):
        print(f"wrote {path}")
    return 0


def _coadaptation_stem(args: argparse.Namespace) -> str:
    """``<checkpoint>-coadaptation-<params>-<split>[-<dataset>][-limitN][-binsB][-mean]
    [-gammaG]``: one PNG per parameter set, split, data, pooling, reduction and marked γ
    (:func:`td_analysis.utils.cliargs.command_stem`)."""
    options: list[tuple[str, object]] = [
        ("", args.params),
        ("", args.split),
        ("", getattr(args, "dataset", None)),
        ("limit", args.limit),
        ("bins", args.bins),
        ("", None if args.reduction == "sum" else args.reduction),
        ("gamma", None if args.gamma == 0.75 else args.gamma),
        ("vmax", args.vmax),
    ]
    model = getattr(args, "model", None)
    if model:
        options.append(("model-", model.replace(":", ".")))
    return cliargs.command_stem(args, "coadaptation", options, (".png",))


#: the picture of C has at most this many rows/columns: a larger C is summed into this many
#: contiguous blocks of the |θ| ordering first (a 20,000² image is 3.2 GB per copy, and a PNG of
#: the figure's size shows fewer than 1,000 pixels a side)
DISPLAY_BINS = 512
#: float64 copies of the exact P × P matrix alive at the peak: H, H[o], H[o][:, o] and the
#: θ-product's temporary while the ordered C is made
EXACT_COPIES = 4
#: float64 copies of the shown D × D matrix while it is drawn: C, |C| for the limit and its
#: quantile's partition, matplotlib's masked, scaled and resampled arrays and the RGBA image
PLOT_COPIES = 12
#: bytes of drawing a figure whatever its matrix (canvas, colour bar, PNG encoder)
PLOT_FIXED = 16 * 2**20
#: float64 P × k arrays alive in one block of k Hessian-vector products (V, HV, the forward and
#: backward tangents of the product; 7.3 measured for the dense networks)
HVP_COPIES = 9


def display_matrix(C, limit: int = DISPLAY_BINS):
    """``C`` itself if it has at most ``limit`` rows, else its D × D block sums (D = ``limit``)
    over contiguous index ranges ``⌊a·D/B⌋`` (row a of C goes to row ⌊a·D/B⌋): for a
    magnitude-ordered C these are again block sums of the |θ| ordering. Work space D·B + D²."""
    import torch

    B = C.shape[0]
    if B <= limit:
        return C
    index = torch.arange(B, device=C.device) * limit // B
    rows = torch.zeros(limit, B, dtype=C.dtype, device=C.device).index_add_(0, index, C)
    return torch.zeros(limit, limit, dtype=C.dtype, device=C.device).index_add_(1, index, rows)


def coadaptation_bytes(size: int, num_params: int, bins: int | None) -> int:
    """Peak bytes ``coadaptation`` allocates after loading the model and data: the larger of
    making C (exact: :data:`EXACT_COPIES` float64 P × P; pooled: the projection's work space,
    :func:`td_analysis.analysis.coadaptation.projection_bytes` at the column count it will use) and
    drawing it (C, the D·B display sums and :data:`PLOT_COPIES` D × D copies)."""
    from td_analysis.analysis.coadaptation import MAX_PROJECTION_COLUMNS

    if bins is None:
        make = EXACT_COPIES * 8 * size * size
    else:  # the sums (one extra row) and a block of at most k products (group_sums's columns)
        k = min(bins, MAX_PROJECTION_COLUMNS)
        make = 8 * bins * (bins + 1) + HVP_COPIES * 8 * num_params * k
        make += 2 * 8 * 256 * 256  # the in-place symmetrisation's two blocks
        make += HVP_COPIES * 8 * num_params * 2  # the block summary's 2 products (C alive)
    make += 4 * 8 * num_params  # θ, the order, the bin ids, the pruned mask
    shown = min(size, DISPLAY_BINS)
    summed = 8 * size * size + 8 * shown * size if size > shown else 0  # display_matrix
    draw = PLOT_COPIES * 8 * shown * shown + PLOT_FIXED
    return max(make, summed, draw)


def _check_matrix_memory(size: int, num_params: int, option: str, bins: int | None) -> None:
    """One-line error naming ``option`` unless the whole command's :func:`coadaptation_bytes`
    fit in the free memory (checked before any Hessian product)."""
    from td_analysis.curvature import available_memory_bytes

    need = coadaptation_bytes(size, num_params, bins)
    avail = available_memory_bytes("cpu")
    if avail is not None and need > avail:
        raise MemoryError(
            f"{option}: a {size:,} × {size:,} coadaptation matrix needs about {need / 1e9:.1f} GB "
            f"(made, summed for the picture and drawn), but only {avail / 1e9:.1f} GB are free; "
            f"use fewer --bins (default {POOLED_BINS}) or fewer --params"
        )
