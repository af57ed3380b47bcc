"""Closed-form Hessian of the cross-entropy loss of a dense ReLU network (any depth).

Network: z₀ = x, a_l = W_l z_{l−1} + b_l, z_l = relu(a_l) (l < L), logits f = a_L; p = softmax(f),
g = p − onehot(y), A = diag(p) − ppᵀ, s_l = 1[a_l > 0] (relu'(0) = 0 and relu'' = 0, as autograd).

H = Σₙ Jₙᵀ Aₙ Jₙ (Gauss–Newton) + Σₙ Σ_k g_{n,k} ∇²f_k (residual, only between layers).

* δ_l = ∂f/∂a_l (K × H_l): δ_L = I, δ_l = δ_{l+1} W_{l+1} diag(s_l).
* A parameter group (W_l or b_l) has rows r (units of layer l) and columns s (input features
  Ξ = z_{l−1} for W_l, Ξ = 1 for b_l); its Jacobian is δ_l[:, r] Ξ_s.
* Gauss–Newton block (a in layer l, b in layer l'): Σₙ M[n,r,r'] Ξ_a[n,s] Ξ_b[n,s'] with
  Mₙ = δ_lᵀ Aₙ δ_{l'}.
* Residual block (l < l', b = W_{l'}): Σₙ e[n,r'] T[n,s',r] Ξ_a[n,s] with e = δ_{l'}ᵀ g = ∂ℓ/∂a_{l'}
  and T = ∂z_{l'−1}/∂a_l = diag(s_{l'−1}) W_{l'−1} ⋯ W_{l+1} diag(s_l).

Rows r·S_a … (r+1)·S_a of a block are one GEMM ``Ξ_aᵀ @ G_r`` with
G_r[n, (r', s')] = M[n,r,r'] Ξ_b[n,s'] + e[n,r'] T[n,s',r] (N the inner dimension), written
straight into the strided view of the preallocated output (only the upper triangle), accumulated
over chunks of examples, then mirrored.  Inside one weight group there is no residual term, so
each unit block (r, r') = Σₙ M[n,r,r'] ξₙξₙᵀ is symmetric: only its upper triangle is computed
(in row tiles) and block (r', r) is a plain copy of it.  For the toy net 3072→10→10 the
first-layer block then costs ≈ N·D²·H(H+1)/4 multiply-adds (0.58 × N·D²·H(H+1)/2 with 512-row
tiles).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from td_analysis.utils.progress import progress_bar as tqdm  # a bar on a terminal only

from ..models import ParamSpec, relu_backward_
from .structure import DenseStructure

__all__ = ["DenseBackend", "mirror_upper_to_lower", "symmetrize_average"]

MIRROR_TILE = 1024
DIAG_TILE = 512
SMALL_TILE = 64


@dataclass(frozen=True)
class _Group:
    """One selected parameter tensor: rows × cols block of θ starting at ``offset``."""

    layer: int
    is_weight: bool
    rows: int
    cols: int
    offset: int

    @property
    def numel(self) -> int:
        return self.rows * self.cols


class DenseBackend:
    """Closed-form products of a model recognised by :func:`structure.dense_structure`.

    ``params`` maps every parameter name of the model to its (analysis-dtype) value; ``specs``
    are the selected ones (the flat layout of θ).  Per chunk of examples every method returns
    *unscaled* sums over the chunk except where a ``scale`` c is passed in.
    """

    def __init__(
        self, structure: DenseStructure, params: dict[str, Tensor], specs: list[ParamSpec]
    ) -> None:
        self.L = len(structure.layers)
        self.W: list[Tensor] = [None] * self.L  # type: ignore[list-item]
        self.b: list[Tensor | None] = [None] * self.L
        for name, (layer, kind) in structure.roles.items():
            (self.W if kind == "weight" else self.b)[layer] = params[name]
        self.groups: list[_Group] = []
        for spec in specs:
            layer, kind = structure.roles[spec.name]
            if kind == "weight":
                rows, cols = spec.shape
                self.groups.append(_Group(layer, True, rows, cols, spec.offset))
            else:
                self.groups.append(_Group(layer, False, spec.shape[0], 1, spec.offset))
        self.K = self.W[-1].shape[0]
        self.itemsize = self.W[0].element_size()
        self.first = min(gr.layer for gr in self.groups)
        self.by_role = {(gr.layer, gr.is_weight): gr for gr in self.groups}

    # ----------------------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        z = x.flatten(1)
        for i in range(self.L):
            a = torch.nn.functional.linear(z, self.W[i], self.b[i])
            z = torch.relu(a) if i < self.L - 1 else a
        return z

    def quantities(self, x: Tensor, y: Tensor, scale: float = 1.0, *, full: bool = True) -> dict:
        """Per-example δ, M, e, T of one chunk (M and e already scaled by c = ``scale``)."""
        z = [x.flatten(1)]
        s: list[Tensor] = []
        for i in range(self.L):
            a = torch.nn.functional.linear(z[-1], self.W[i], self.b[i])
            if i < self.L - 1:
                s.append((a > 0).to(a.dtype))  # relu'(0) = 0, as in autograd
                z.append(torch.relu(a))
            else:
                f = a
        n, K = f.shape
        p = torch.softmax(f, dim=1)
        g = p.clone()
        g[torch.arange(n, device=g.device), y] -= 1
        A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        layers = sorted({gr.layer for gr in self.groups})
        first = layers[0]
        delta: dict[int, Tensor] = {}
        d = torch.eye(K, dtype=f.dtype, device=f.device).expand(n, K, K)
        for i in range(self.L - 1, first - 1, -1):
            if i < self.L - 1:
                d = (d @ self.W[i + 1]) * s[i][:, None, :]
            delta[i] = d
        Ad = {i: A @ delta[i] for i in layers}
        out = {"z": z, "delta": delta, "Ad": Ad, "M": {}, "e": {}, "T": {}}
        if not full:
            return out
        for ia, la in enumerate(layers):
            for lb in layers[ia:]:
                out["M"][la, lb] = (delta[la].mT @ Ad[lb]).mul_(scale)
        weight_layers = {gr.layer for gr in self.groups if gr.is_weight}
        for lb in weight_layers:
            earlier = [la for la in layers if la < lb]
            if not earlier:
                continue
            out["e"][lb] = torch.einsum("nkr,nk->nr", delta[lb], g).mul_(scale)
            for la in earlier:
                T = torch.diag_embed(s[la])
                for j in range(la + 1, lb):
                    T = (self.W[j] @ T) * s[j][:, :, None]
                out["T"][la, lb] = T
        return out

    def features(self, q: dict, group: _Group) -> Tensor:
        if group.is_weight:
            return q["z"][group.layer]
        z = q["z"][0]
        return torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)

    def max_cols(self) -> int:
        return max(gr.numel for gr in self.groups)

    def example_bytes(self) -> int:
        """Work space per example of one chunk (G buffer, activations, δ, M, T)."""
        inputs = [w.shape[1] for w in self.W]  # z_{l−1}: activations (and the data)
        units = [w.shape[0] for w in self.W]  # a_l: per-example δ, M, T are (K or H) × H
        per = self.max_cols() + 3 * sum(inputs)
        per += 3 * self.K * sum(units) + 2 * sum(a * b for a in units for b in units)
        return per * self.itemsize

    def num_steps(self) -> int:
        return sum(gr.rows for i, gr in enumerate(self.groups) for _ in self.groups[i:])

    # ----------------------------------------------------------------------------- Hessian
    def hessian_into(
        self,
        H: Tensor,
        chunks: Iterable[tuple[Tensor, Tensor]],
        chunk_size: int,
        scale: float,
        *,
        num_chunks: int = 1,
        progress: bool = False,
        mirror: bool = True,
    ) -> Tensor:
        """H ← c Σ_chunks (upper triangle of the closed form), then mirrored if ``mirror``.

        ``chunk_size`` bounds the length of every chunk (sizes the G work buffer).  With
        ``mirror=False`` only the upper triangle is valid (a caller that still has to sum over
        processes mirrors afterwards with :meth:`mirror`).
        """
        gbuf = torch.empty(chunk_size * self.max_cols(), dtype=H.dtype, device=H.device)
        bar = tqdm(total=num_chunks * self.num_steps(), disable=not progress, desc="Hessian")
        first = True
        with torch.no_grad():
            for x, y in chunks:
                q = self.quantities(x, y, scale)
                for ia, ga in enumerate(self.groups):
                    xa_t = self.features(q, ga).mT
                    for gb in self.groups[ia:]:
                        self._block(H, q, ga, gb, xa_t, gbuf, first=first)
                        bar.update(ga.rows)
                first = False
            bar.close()
            if first:  # no examples (an empty shard): H = 0
                H.zero_()
            if mirror:
                self.mirror(H)
        return H

    def mirror(self, H: Tensor) -> None:
        """Fill the lower triangle of H from the upper one, parameter group by group.

        In a weight group computed unit block by unit block (:func:`_unit_symmetric`), each
        upper unit block (r, r'), r ≤ r', is first completed from its own upper triangle, then
        copied as it is (no transpose: it is symmetric) onto block (r', r).  Everything else
        is a transposed copy.  The result is exactly symmetric.
        """
        rs, cs = H.stride()
        for ia, ga in enumerate(self.groups):
            a0, a1 = ga.offset, ga.offset + ga.numel
            if _unit_symmetric(ga):
                S, R, step = ga.cols, ga.rows, ga.cols * (rs + cs)
                base = H.storage_offset() + a0 * (rs + cs)
                for r in range(R):
                    for r2 in range(r, R):
                        mirror_upper_to_lower(
                            H[a0 + r * S : a0 + (r + 1) * S, a0 + r2 * S : a0 + (r2 + 1) * S]
                        )
                for k in range(1, R):  # unit blocks (r + k, r) ← (r, r + k), all r at once
                    src = _tiles(H, base + k * S * cs, ((R - k, step),), S)
                    dst = _tiles(H, base + k * S * rs, ((R - k, step),), S)
                    dst.copy_(src)
            else:
                mirror_upper_to_lower(H[a0:a1, a0:a1])
            for gb in self.groups[ia + 1 :]:
                b0, b1 = gb.offset, gb.offset + gb.numel
                for t0 in range(a0, a1, MIRROR_TILE):  # row strips keep the copy cache-sized
                    t1 = min(a1, t0 + MIRROR_TILE)
                    H[b0:b1, t0:t1].copy_(H[t0:t1, b0:b1].mT)

    def _block(
        self, H: Tensor, q: dict, ga: _Group, gb: _Group, xa_t: Tensor, gbuf: Tensor, first: bool
    ) -> None:
        """Upper-triangle part of the (ga, gb) block: per row unit r one GEMM Ξ_aᵀ @ G_r."""
        same = ga is gb
        M = q["M"][ga.layer, gb.layer]
        xb = self.features(q, gb)
        n = xb.shape[0]
        residual = gb.is_weight and ga.layer < gb.layer
        if residual:
            e, T = q["e"][gb.layer], q["T"][ga.layer, gb.layer]
        for r in range(ga.rows):
            r0 = r if same else 0
            ncols = (gb.rows - r0) * gb.cols
            G = gbuf[: n * ncols].view(n, gb.rows - r0, gb.cols)
            torch.mul(M[:, r, r0:, None], xb[:, None, :], out=G)
            if residual:
                G.addcmul_(e[:, r0:, None], T[:, None, :, r])
            G = G.view(n, ncols)
            row0 = ga.offset + r * ga.cols
            col0 = gb.offset + r0 * gb.cols
            if same and _unit_symmetric(ga):
                # Every unit block (r, r') = Σₙ M[n,r,r'] ξₙξₙᵀ of a weight group is itself
                # symmetric: compute the upper triangle of each, tile by tile (half the work).
                S = ga.cols
                G3 = G.view(n, ga.rows - r0, S)
                for t0 in range(0, S, DIAG_TILE):
                    t1 = min(S, t0 + DIAG_TILE)
                    a = xa_t[t0:t1]
                    for u in range(ga.rows - r0):
                        c = col0 + u * S
                        _mm_into(H[row0 + t0 : row0 + t1, c + t0 : c + S], a, G3[:, u, t0:], first)
                continue
            # Narrow groups (biases, small layers): the row from unit r0 on in one GEMM; the few
            # entries below the diagonal are overwritten by the mirror.
            _mm_into(H[row0 : row0 + ga.cols, col0 : gb.offset + gb.numel], xa_t, G, first)

    # ----------------------------------------------------------------------------- diagonal
    def diagonal_bytes(self, features: int) -> int:
        """Work space per example of :meth:`diagonal_chunk`."""
        return self.itemsize * (3 * features + 64 * self.K * self.K)

    def diagonal_chunk(self, x: Tensor, y: Tensor, out: Tensor) -> None:
        """out += Σₙ diag ∇²ℓₙ: for W_l[r, s], Σₙ Mₙ[r,r] zₙ[s]² (no residual on the diagonal)."""
        with torch.no_grad():
            q = self.quantities(x, y, full=False)
            for gr in self.groups:
                m = torch.einsum("nkr,nkr->nr", q["delta"][gr.layer], q["Ad"][gr.layer])
                xi = self.features(q, gr)
                block = (m.mT @ xi.square()).reshape(-1)
                out[gr.offset : gr.offset + gr.numel] += block

    # ----------------------------------------------------------------------------- H·V
    def hvp_bytes(self, k: int) -> int:
        """Work space per example of :meth:`hvp_chunk` with k vectors."""
        widths = [w.shape[1] for w in self.W] + [self.K]
        return self.itemsize * (2 * widths[0] + 4 * k * sum(widths[1:]) + 2 * k * self.K)

    def tangents(self, V: Tensor) -> dict:
        """The blocks of V (P × k) per layer, laid out for the GEMMs of :meth:`hvp_from`.

        Tangent activations are kept k-major (n × k × width) so that every propagation through
        a weight matrix is one GEMM with n·k rows.  For a weight group Ẇ (H × w × k):
        ``fwd`` = w × (k·H) with fwd[s, j·H + r] = Ẇ_j[r, s] (for z Ẇ_jᵀ, all j at once) and
        ``back`` = H × (k·w) with back[r, j·w + s] = Ẇ_j[r, s] (for e Ẇ_j).
        """
        k = V.shape[1]
        fwd: dict[int, Tensor] = {}
        back: dict[int, Tensor] = {}
        bias: dict[int, Tensor] = {}  # layer → k × H
        for gr in self.groups:
            block = V[gr.offset : gr.offset + gr.numel]
            if gr.is_weight:
                VW = block.view(gr.rows, gr.cols, k)
                fwd[gr.layer] = VW.permute(1, 2, 0).reshape(gr.cols, k * gr.rows)
                if gr.layer > self.first:
                    back[gr.layer] = VW.permute(0, 2, 1).reshape(gr.rows, k * gr.cols)
            else:
                bias[gr.layer] = block.view(gr.rows, k).mT.contiguous()
        return {"fwd": fwd, "back": back, "bias": bias, "k": k, "acc": {}}

    def accumulators(self, tangents: dict, out: Tensor) -> dict:
        """Per weight group, (k·H) × w and H × (k·w) sums of the two weight-gradient GEMMs.

        For k = 1 both are the group's own (H × w) view of ``out`` (no copy, no permute); for
        k > 1 they are zeroed buffers that :meth:`finish` permutes into ``out`` once.
        """
        k = tangents["k"]
        acc = tangents["acc"]
        for gr in self.groups:
            if not gr.is_weight:
                continue
            if k == 1:
                view = out[gr.offset : gr.offset + gr.numel].view(gr.rows, gr.cols)
                acc[gr.layer] = (view, view)
            else:
                acc[gr.layer] = (
                    out.new_zeros(k * gr.rows, gr.cols),
                    out.new_zeros(gr.rows, k * gr.cols),
                )
        return tangents

    def forward_quantities(self, x: Tensor, y: Tensor) -> dict:
        """What H·V needs of the point θ for one chunk, independent of V (cacheable).

        z_l (layer inputs, z_0 = flattened x), p = softmax(f) and e_l = ∂ℓₙ/∂a_l for the layers
        from the first selected one up (e_{L−1} = p − onehot(y), e_l = s_l ⊙ W_{l+1}ᵀ e_{l+1}).
        """
        with torch.no_grad():
            z = [x.flatten(1)]
            for i in range(self.L - 1):
                z.append(torch.relu(torch.nn.functional.linear(z[-1], self.W[i], self.b[i])))
            f = torch.nn.functional.linear(z[-1], self.W[-1], self.b[-1])
            p = torch.softmax(f, dim=1)
            e: list[Tensor | None] = [None] * self.L
            g = p.clone()
            g[torch.arange(g.shape[0], device=g.device), y] -= 1
            e[-1] = g
            for i in range(self.L - 2, self.first - 1, -1):
                e[i] = relu_backward_(e[i + 1] @ self.W[i + 1], z[i + 1])
        return {"z": z, "p": p, "e": e}

    def finish(self, tangents: dict, out: Tensor) -> None:
        """Move the weight-gradient accumulators of a k > 1 product into ``out`` (P × k)."""
        k = tangents["k"]
        if k == 1:
            return  # they were views of ``out``
        for gr in self.groups:
            if gr.is_weight:
                acc1, acc2 = tangents["acc"][gr.layer]
                target = out[gr.offset : gr.offset + gr.numel].view(gr.rows, gr.cols, k)
                target += acc1.view(k, gr.rows, gr.cols).permute(1, 2, 0)
                target += acc2.view(gr.rows, k, gr.cols).permute(0, 2, 1)

    def hvp_chunk(self, x: Tensor, y: Tensor, tangents: dict, out: Tensor) -> None:
        """out += Σₙ ∇²ℓₙ V over the chunk (forward quantities computed here)."""
        self.hvp_from(self.forward_quantities(x, y), tangents, out)

    def hvp_from(self, q: dict, tangents: dict, out: Tensor) -> None:
        """out += Σₙ ∇²ℓₙ V by the R-operator (Pearlmutter), all k columns in the same GEMMs.

        Forward tangents ȧ_l = Ẇ_l z_{l−1} + ḃ_l + W_l ż_{l−1}, ż_l = s_l ⊙ ȧ_l (relu'' = 0);
        backward ė_L = A ȧ_L = p ⊙ (ȧ_L − pᵀȧ_L), ė_l = s_l ⊙ (W_{l+1}ᵀ ė_{l+1} + Ẇ_{l+1}ᵀ e_{l+1});
        (H V)_{W_l} = Σₙ ė_l z_{l−1}ᵀ + e_l ż_{l−1}ᵀ, (H V)_{b_l} = Σₙ ė_l.
        ``q`` comes from :meth:`forward_quantities` (s_l = 1[z_{l+1} > 0] = 1[a_l > 0]).
        """
        with torch.no_grad():
            self._hvp_from(q, tangents, out)

    def _hvp_from(self, q: dict, t: dict, out: Tensor) -> None:
        L, k, first, acc = self.L, t["k"], self.first, t["acc"]
        z, p, e = q["z"], q["p"], q["e"]
        n = z[0].shape[0]
        fwd, back, bias = t["fwd"], t["back"], t["bias"]
        zdot: list[Tensor | None] = [None] * L  # tangent of layer inputs, n × k × width
        adot = None
        for i in range(first, L):
            width = self.W[i].shape[0]
            adot = None
            if zdot[i] is not None:
                adot = (zdot[i].view(n * k, -1) @ self.W[i].mT).view(n, k, width)
            if i in fwd:
                term = (z[i] @ fwd[i]).view(n, k, width)
                adot = term if adot is None else adot.add_(term)
            if i in bias:
                adot = (
                    bias[i].expand(n, k, width).contiguous() if adot is None else adot.add_(bias[i])
                )
            if i < L - 1:
                zdot[i + 1] = relu_backward_(adot, z[i + 1][:, None, :])  # adot is fresh
        # ė at the logits: A ȧ = p ⊙ (ȧ − ⟨p, ȧ⟩)
        edot = (adot - (adot @ p[:, :, None])) * p[:, None, :]
        groups = self.by_role
        for i in range(L - 1, first - 1, -1):
            if i < L - 1:  # ė_i from layer i + 1
                width = self.W[i].shape[0]
                nxt = (edot.reshape(n * k, -1) @ self.W[i + 1]).view(n, k, width)
                if i + 1 in back:
                    nxt.add_((e[i + 1] @ back[i + 1]).view(n, k, width))
                edot = relu_backward_(nxt, z[i + 1][:, None, :])
            if (i, True) in groups:
                acc1, acc2 = acc[i]
                acc1.addmm_(edot.reshape(n, -1).mT, z[i])  # (k·H) × w: [j, r, s]
                if zdot[i] is not None:
                    acc2.addmm_(e[i].mT, zdot[i].reshape(n, -1))  # H × (k·w): [r, j, s]
            gb = groups.get((i, False))
            if gb is not None:
                out[gb.offset : gb.offset + gb.numel] += edot.sum(0).mT


def _unit_symmetric(group: _Group) -> bool:
    """Whether a group's diagonal block is computed as upper triangles of its unit blocks.

    Worth it for wide weight groups (the 3,072 inputs of the toy network's first layer): it
    halves the multiply-adds of that block, N·D²·H(H+1)/4 instead of N·D²·H(H+1)/2.
    """
    return group.is_weight and group.cols >= 2 * DIAG_TILE


def _mm_into(target: Tensor, a: Tensor, b: Tensor, first: bool) -> None:
    """``target = a @ b`` on the first chunk of examples, ``target += a @ b`` after it."""
    if first:
        torch.mm(a, b, out=target)
    else:
        target.addmm_(a, b)


def _tiles(H: Tensor, offset: int, batch: tuple[tuple[int, int], ...], tile: int) -> Tensor:
    """Batched view of square tiles of the matrix H: shape (*counts, tile, tile).

    ``batch`` lists (count, step) pairs, a step being the distance between consecutive tiles
    along the diagonal in elements; ``offset`` is the first tile's storage offset.
    """
    rs, cs = H.stride()
    sizes = tuple(c for c, _ in batch) + (tile, tile)
    strides = tuple(st for _, st in batch) + (rs, cs)
    return H.as_strided(sizes, strides, offset)


def mirror_upper_to_lower(H: Tensor, tile: int | None = None) -> None:
    """H ← triu(H) + triu(H, 1)ᵀ in place (no second P² buffer).

    Tiles (I, I+k) of the upper triangle are copied, transposed, onto tiles (I+k, I), one
    batched copy per diagonal offset k (tile = ``MIRROR_TILE``); inside the diagonal tiles the
    same is done with ``SMALL_TILE`` sub-tiles, and the small diagonal sub-tiles are fixed in one
    batched triu.  Few, large operations: cheap on a busy machine, where each parallel region
    can wait for a descheduled thread.
    """
    tile = MIRROR_TILE if tile is None else tile
    small = min(SMALL_TILE, tile)
    tile -= tile % small
    P = H.shape[0]
    m = (P // tile) * tile  # leading part covered by whole tiles
    base = H.storage_offset()
    rs, cs = H.stride()
    diag_step = rs + cs
    nb, ns = m // tile, tile // small
    for k in range(1, nb):
        src = _tiles(H, base + k * tile * cs, ((nb - k, tile * diag_step),), tile)
        dst = _tiles(H, base + k * tile * rs, ((nb - k, tile * diag_step),), tile)
        dst.copy_(src.mT)
    for k in range(1, ns):  # sub-tiles inside every diagonal tile
        batch = ((nb, tile * diag_step), (ns - k, small * diag_step))
        src = _tiles(H, base + k * small * cs, batch, small)
        dst = _tiles(H, base + k * small * rs, batch, small)
        dst.copy_(src.mT)
    if nb:
        d = _tiles(H, base, ((nb * ns, small * diag_step),), small)
        d.copy_(torch.triu(d) + torch.triu(d, 1).mT)
    if m < P:  # the remainder strip and corner
        H[m:, :m].copy_(H[:m, m:].mT)
        corner = H[m:, m:]
        corner.copy_(torch.triu(corner) + torch.triu(corner, 1).mT)


def symmetrize_average(H: Tensor, tile: int | None = None) -> None:
    """H ← (H + Hᵀ)/2 in place, tile by tile."""
    tile = MIRROR_TILE if tile is None else tile
    P = H.shape[0]
    for i0 in range(0, P, tile):
        i1 = min(P, i0 + tile)
        d = H[i0:i1, i0:i1]
        d.copy_((d + d.mT) * 0.5)
        for j0 in range(i1, P, tile):
            j1 = min(P, j0 + tile)
            upper, lower = H[i0:i1, j0:j1], H[j0:j1, i0:i1]
            avg = (upper + lower.mT) * 0.5
            upper.copy_(avg)
            lower.copy_(avg.mT)


def workspace_bytes(dense: DenseBackend, chunk_size: int) -> int:
    """Bytes of work space the closed-form Hessian allocates besides the P × P output."""
    return chunk_size * dense.example_bytes()
