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

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._engine import WORK_BYTES, Problem, balanced_chunk

__all__ = ["dense_layers", "dense_support"]

_MIRROR_TILE = 1024
_DIAG_TILE = 512
_SMALL_TILE = 64


def dense_layers(model: nn.Module) -> list[nn.Linear] | str:
    """The ``nn.Linear`` layers of a DenseNet-like model, or a string saying why it is not one.

    Structure required: ``model.layers`` an ``nn.ModuleList`` of ``nn.Linear`` with matching
    widths, and no parameters outside it.  (That ReLU sits between them and the logits come last is
    verified numerically on the data, see :func:`dense_support`.)
    """
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return f"{type(model).__name__} has no non-empty nn.ModuleList `layers`"
    if not all(type(layer) is nn.Linear for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers})
        return f"`layers` must hold only nn.Linear modules, found {kinds}"
    for i in range(len(layers) - 1):
        if layers[i].out_features != layers[i + 1].in_features:
            return f"layers {i} and {i + 1} have mismatched widths"
    expected = set()
    for i, layer in enumerate(layers):
        expected.add(f"layers.{i}.weight")
        if layer.bias is not None:
            expected.add(f"layers.{i}.bias")
    names = {n for n, _ in model.named_parameters()}
    if names != expected:
        return f"parameters outside `layers`: {sorted(names - expected)}"
    if any(True for _ in model.buffers()):
        return "the model has buffers (e.g. normalisation statistics)"
    return list(layers)


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


class _Dense:
    """Cast weights/biases of a DenseNet-like model plus the selected parameter groups."""

    def __init__(self, problem: Problem, layers: list[nn.Linear]) -> None:
        self.problem = problem
        p = problem.param_dict(problem.theta)  # addressed by name: layers.{i}.weight / .bias
        self.L = len(layers)
        self.W = [p[f"layers.{i}.weight"] for i in range(self.L)]
        self.b = [p.get(f"layers.{i}.bias") for i in range(self.L)]
        self.groups: list[_Group] = []
        for spec in problem.specs:
            _, idx, kind = spec.name.split(".")
            layer = int(idx)
            if kind == "weight":
                rows, cols = spec.shape
                self.groups.append(_Group(layer, True, rows, cols, spec.offset))
            else:
                self.groups.append(_Group(layer, False, spec.shape[0], 1, spec.offset))
        self.K = self.W[-1].shape[0]

    # ----------------------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        z = x.flatten(1)
        for i in range(self.L):
            a = torch.nn.functional.linear(z, self.W[i], self.b[i])
            z = torch.relu(a) if i < self.L - 1 else a
        return z

    def quantities(self, x: Tensor, y: Tensor, *, full: bool = True) -> dict:
        """Per-example δ, M, e, T of one chunk (M and e already scaled by c)."""
        scale = self.problem.scale
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
        return per * self.problem.itemsize

    def num_steps(self) -> int:
        return sum(gr.rows for i, gr in enumerate(self.groups) for _ in self.groups[i:])

    # ----------------------------------------------------------------------------- Hessian
    def hessian_into(self, H: Tensor, chunk_size: int | None, progress: bool) -> Tensor:
        problem = self.problem
        cs = chunk_size or balanced_chunk(problem.num_examples, self.example_bytes())
        cs = min(cs, problem.num_examples)
        gbuf = torch.empty(cs * self.max_cols(), dtype=problem.dtype, device=problem.device)
        num_chunks = -(-problem.num_examples // cs)
        bar = tqdm(total=num_chunks * self.num_steps(), disable=not progress, desc="Hessian")
        with torch.no_grad():
            for ci, (x, y) in enumerate(problem.chunks(cs)):
                q = self.quantities(x, y)
                for ia, ga in enumerate(self.groups):
                    xa_t = self.features(q, ga).mT
                    for gb in self.groups[ia:]:
                        self._block(H, q, ga, gb, xa_t, gbuf, first=ci == 0)
                        bar.update(ga.rows)
            bar.close()
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
                for t0 in range(a0, a1, _MIRROR_TILE):  # row strips keep the copy cache-sized
                    t1 = min(a1, t0 + _MIRROR_TILE)
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
                for t0 in range(0, S, _DIAG_TILE):
                    t1 = min(S, t0 + _DIAG_TILE)
                    a = xa_t[t0:t1]
                    for u in range(ga.rows - r0):
                        c = col0 + u * S
                        _mm_into(H[row0 + t0 : row0 + t1, c + t0 : c + S], a, G3[:, u, t0:], first)
                continue
            # Narrow groups (biases, small layers): the row from unit r0 on in one GEMM; the few
            # entries below the diagonal are overwritten by the mirror.
            _mm_into(H[row0 : row0 + ga.cols, col0 : gb.offset + gb.numel], xa_t, G, first)

    # ----------------------------------------------------------------------------- diagonal
    def diagonal(self, chunk_size: int | None) -> Tensor:
        """diag H: for W_l[r, s], Σₙ Mₙ[r,r] zₙ[s]² (the residual never touches the diagonal)."""
        problem = self.problem
        per = problem.itemsize * (3 * problem.inputs[0].numel() + 64 * self.K * self.K)
        cs = chunk_size or balanced_chunk(problem.num_examples, per)
        out = torch.zeros_like(problem.theta)
        with torch.no_grad():
            for x, y in problem.chunks(cs):
                q = self.quantities(x, y, full=False)
                for gr in self.groups:
                    m = torch.einsum("nkr,nkr->nr", q["delta"][gr.layer], q["Ad"][gr.layer])
                    xi = self.features(q, gr)
                    block = (m.mT @ xi.square()).reshape(-1)
                    out[gr.offset : gr.offset + gr.numel] += block
        return out.mul_(problem.scale)

    # ----------------------------------------------------------------------------- H·V
    def hvp(self, V: Tensor, chunk_size: int | None) -> Tensor:
        """H V for V of shape P × k by the R-operator (Pearlmutter), all k at once in GEMMs.

        Forward tangents ȧ_l = Ẇ_l z_{l−1} + ḃ_l + W_l ż_{l−1}, ż_l = s_l ⊙ ȧ_l (relu'' = 0);
        backward e_L = g, ė_L = A ȧ_L, ė_l = s_l ⊙ (W_{l+1}ᵀ ė_{l+1} + Ẇ_{l+1}ᵀ e_{l+1});
        (H V)_{W_l} = Σₙ ė_l z_{l−1}ᵀ + e_l ż_{l−1}ᵀ, (H V)_{b_l} = Σₙ ė_l.
        """
        problem = self.problem
        k = V.shape[1]
        widths = [w.shape[1] for w in self.W] + [self.K]
        per = problem.itemsize * (2 * widths[0] + 4 * k * sum(widths[1:]) + 2 * k * self.K)
        cs = chunk_size or balanced_chunk(problem.num_examples, per)
        # tangents of the selected groups: weights as (in × (H·k)) for the forward GEMM
        VW: dict[int, Tensor] = {}  # layer → H × in × k
        VWt: dict[int, Tensor] = {}  # layer → in × (H·k)
        Vb: dict[int, Tensor] = {}  # layer → H × k
        for gr in self.groups:
            block = V[gr.offset : gr.offset + gr.numel]
            if gr.is_weight:
                VW[gr.layer] = block.view(gr.rows, gr.cols, k)
                VWt[gr.layer] = VW[gr.layer].permute(1, 0, 2).reshape(gr.cols, gr.rows * k)
            else:
                Vb[gr.layer] = block.view(gr.rows, k)
        out = torch.zeros_like(V)
        with torch.no_grad():
            for x, y in problem.chunks(cs):
                self._hvp_chunk(x, y, VW, VWt, Vb, out)
        return out.mul_(problem.scale)

    def _hvp_chunk(
        self,
        x: Tensor,
        y: Tensor,
        VW: dict[int, Tensor],
        VWt: dict[int, Tensor],
        Vb: dict[int, Tensor],
        out: Tensor,
    ) -> None:
        L, k = self.L, out.shape[1]
        n = x.shape[0]
        z, s = [x.flatten(1)], []
        zdot: list[Tensor | None] = [None]  # n × width × k; the inputs have no tangent
        for i in range(L):
            a = torch.nn.functional.linear(z[-1], self.W[i], self.b[i])
            adot = None
            if i in VWt:
                adot = (z[-1] @ VWt[i]).view(n, -1, k)
            if i in Vb:
                adot = Vb[i].expand(n, -1, -1) if adot is None else adot + Vb[i]
            if zdot[-1] is not None:
                prop = self.W[i] @ zdot[-1]
                adot = prop if adot is None else adot + prop
            if i < L - 1:
                s.append((a > 0).to(a.dtype))
                z.append(torch.relu(a))
                zdot.append(None if adot is None else adot * s[-1][:, :, None])
            else:
                f, fdot = a, adot
        p = torch.softmax(f, dim=1)
        e = p.clone()
        e[torch.arange(n, device=e.device), y] -= 1
        if fdot is None:  # nothing selected feeds the logits (cannot happen: groups non-empty)
            fdot = torch.zeros(n, self.K, k, dtype=f.dtype, device=f.device)
        edot = p[:, :, None] * (fdot - (p[:, None, :] @ fdot))
        first = min(gr.layer for gr in self.groups)
        groups = {(gr.layer, gr.is_weight): gr for gr in self.groups}
        for i in range(L - 1, first - 1, -1):
            if i < L - 1:  # e_i, ė_i from layer i + 1
                back = edot.mT @ self.W[i + 1]  # n × k × H_i
                edot = back.mT
                if i + 1 in VW:
                    h_next, h_i = VW[i + 1].shape[:2]
                    extra = (e @ VW[i + 1].reshape(h_next, h_i * k)).view(n, h_i, k)
                    edot = edot + extra
                edot = edot * s[i][:, :, None]
                e = (e @ self.W[i + 1]) * s[i]
            gw = groups.get((i, True))
            if gw is not None:
                target = out[gw.offset : gw.offset + gw.numel].view(gw.rows, gw.cols, k)
                first_term = z[i].mT @ edot.reshape(n, gw.rows * k)  # in × (H·k)
                target += first_term.view(gw.cols, gw.rows, k).permute(1, 0, 2)
                if zdot[i] is not None:
                    target += (e.mT @ zdot[i].reshape(n, gw.cols * k)).view(gw.rows, gw.cols, k)
            gb = groups.get((i, False))
            if gb is not None:
                out[gb.offset : gb.offset + gb.numel] += edot.sum(0)


def _unit_symmetric(group: _Group) -> bool:
    """Whether a group's diagonal block is computed as upper triangles of its unit blocks.

    Worth it for wide weight groups (the 3,072 inputs of the toy network's first layer): it
    halves the multiply-adds of that block, N·D²·H(H+1)/4 instead of N·D²·H(H+1)/2.
    """
    return group.is_weight and group.cols >= 2 * _DIAG_TILE


def _mm_into(target: Tensor, a: Tensor, b: Tensor, first: bool) -> None:
    """``target = a @ b`` on the first chunk of examples, ``target += a @ b`` after it."""
    if first:
        torch.mm(a, b, out=target)
    else:
        target.addmm_(a, b)


def dense_support(problem: Problem, *, check_examples: int = 32) -> _Dense | str:
    """A closed-form evaluator for ``problem`` or the reason it does not apply.

    Beyond the structure (:func:`dense_layers`) this checks numerically, on the first few
    examples, that the model's output equals ``W_L relu(… relu(W_1 x + b_1) …) + b_L``.
    """
    layers = dense_layers(problem.model)
    if isinstance(layers, str):
        return layers
    dense = _Dense(problem, layers)
    x = problem.inputs[:check_examples]
    with torch.no_grad():
        try:
            ours = dense.forward(x)
            theirs = problem.logits(problem.theta, x)
        except Exception as exc:  # a model whose forward does not take flat inputs
            return f"forward check failed: {exc}"
    if theirs.shape != ours.shape:
        return f"the model's output shape {tuple(theirs.shape)} is not {tuple(ours.shape)}"
    tol = 1e-12 if problem.dtype == torch.float64 else 1e-4
    scale = float(ours.abs().max()) if ours.numel() else 0.0
    if not torch.allclose(theirs, ours, rtol=tol, atol=tol * (1.0 + scale)):
        return "the model's forward is not Linear → ReLU → … → Linear on `layers`"
    return dense


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
    batched copy per diagonal offset k (tile = ``_MIRROR_TILE``); inside the diagonal tiles the
    same is done with ``_SMALL_TILE`` sub-tiles, and the small diagonal sub-tiles are fixed in one
    batched triu.  Few, large operations: cheap on a busy machine, where each parallel region
    can wait for a descheduled thread.
    """
    tile = _MIRROR_TILE if tile is None else tile
    small = min(_SMALL_TILE, tile)
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
    tile = _MIRROR_TILE if tile is None else tile
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


def workspace_bytes(dense: _Dense, chunk_size: int | None) -> int:
    """Bytes of work space the closed form allocates besides the P × P output."""
    per = dense.example_bytes()
    cs = chunk_size or balanced_chunk(dense.problem.num_examples, per, WORK_BYTES)
    return min(cs, dense.problem.num_examples) * per
