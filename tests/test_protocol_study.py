"""The toy protocol study (``td_analysis.pipelines.protocol_study``, issue #19 part 4).

* On the real CIFAR-10 data, small (``--quick``: 500 training and 500 holdout images, one epoch),
  every record's block shares of |C| (own scale, clipped at ±3000, as drawn) and its pruned-set
  sums are recomputed from the checkpoint with a float64 ``torch.func.hessian`` of the summed
  cross-entropy, ordered by numpy's argsort (``references.py``); the drawing is recomputed with
  matplotlib's own colour mapping and a nearest-colour read-back.
* The distance and verdict logic, and the normalisation, on hand-made numbers with the paper's
  Table 1 typed in from REFERENCE.md.
* The CLI writes ``protocol_study.json`` atomically: an interrupted run or a failing write leaves
  the old file whole and no temporary file.
* The published images (``../shared/reference``, skipped without them) decode to a symmetric
  matrix (a misread grid would not be) whose shares are :data:`PUBLISHED_DRAWN`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from references import block_sums, cross_entropy64, dense_params, last_layer_coadaptation

from td_analysis.pipelines import protocol_study as ps

PAPER = {  # REFERENCE.md, Table 1
    "none": {"abs": 0.120698, "accuracy": 0.3811, "pruned_accuracy": 0.2613},
    "targeted-weight": {"abs": 0.0145907, "accuracy": 0.4009, "pruned_accuracy": 0.4014},
}
REFERENCE_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "reference"


def drawn_reference(C: np.ndarray, vmax: float) -> np.ndarray:
    """C through matplotlib's BrBG at ±vmax (as ``imshow`` colours it), each RGBA matched to the
    nearest of the 256 colours, read at the colour's centre; the two central colours read as 0."""
    cmap = matplotlib.colormaps["BrBG"]
    rgba = cmap(matplotlib.colors.Normalize(-vmax, vmax)(C), bytes=True)[..., :3].astype(float)
    lut = cmap(np.arange(256), bytes=True)[:, :3].astype(float)
    idx = ((rgba[..., None, :] - lut) ** 2).sum(-1).argmin(-1)
    values = (idx + 0.5) * (2 * vmax / 256) - vmax
    return np.where((idx == 127) | (idx == 128), 0.0, values)


def shares(C: np.ndarray, pruned: np.ndarray) -> list[float]:
    b = block_sums(C, pruned)
    return [b[f"abs_share_{k}"] for k in ps.BLOCKS]


@pytest.fixture(scope="module")
def quick(tmp_path_factory, data_root):
    base = tmp_path_factory.mktemp("protocol-study")
    args = ["--quick", "--seeds", "0", "--protocols", "sgd,adam", "--quiet"]
    args += ["--runs", str(base / "runs"), "--out", str(base / "out"), "--data-dir", str(data_root)]
    assert ps.main(args) == 0
    return base, json.loads((base / "out" / "protocol_study.json").read_text())


@pytest.mark.slow
def test_records_match_a_brute_force_hessian(quick, data_root) -> None:
    from td_analysis.data import load_dataset
    from td_analysis.training.loop import load_checkpoint

    base, study = quick
    x, y = load_dataset("cifar10", "holdout", root=data_root, preprocessing="standardize")
    x, y = x[:500], y[:500]
    ckpts = [load_checkpoint(p) for p in sorted((base / "runs").glob("toy-*.pt"))]
    assert len(study["records"]) == len(ckpts) == 4
    for rec in study["records"]:
        (ck,) = [
            c
            for c in ckpts
            if c.config.regulariser.kind == rec["regulariser"]
            and c.config.optimizer == rec["protocol"]
        ]
        ws, bs = dense_params(ck.model)
        theta, C = last_layer_coadaptation(ws, bs, x, y, "sum")
        order = np.argsort(-np.abs(theta), kind="stable")
        C = C[np.ix_(order, order)]
        pruned = np.arange(100) >= 25  # the lowest 75 % come last
        tol = dict(rel=1e-9, abs=1e-12)
        assert rec["own"]["shares"] == pytest.approx(shares(C, pruned), **tol)
        assert rec["clipped"]["shares"] == pytest.approx(
            shares(np.clip(C, -3000, 3000), pruned), **tol
        )
        assert rec["own"]["half_pp"] == pytest.approx(0.5 * C[25:, 25:].sum(), **tol)
        assert rec["n_images"] == 500
        # the Table 1 accuracy of this network on the same images
        logits = ck.model.double()(x.double()).argmax(1)
        assert rec["accuracy"] == pytest.approx(float((logits == y).double().mean()), abs=1e-12)
        # deleting Figure 1's pruned set alone: brute-force change of the mean loss
        w1 = ws[1].reshape(-1).clone()
        w1[order[25:]] = 0
        after = cross_entropy64([ws[0], w1.reshape(10, 10)], bs, x, y)
        assert rec["fig_measured"] == pytest.approx(
            float(after - cross_entropy64(ws, bs, x, y)), rel=1e-9, abs=1e-12
        )
        # as drawn, at a colour scale where 500 images' entries span many colours
        vmax = float(np.abs(C).max()) / 3
        got = ps.network_record(ck.model.float(), x, y, vmax=vmax, cache_dir=base / "cache")
        assert got["drawn"]["shares"] == pytest.approx(
            shares(drawn_reference(C, vmax), pruned), **tol
        )


def test_distances_and_verdict_on_hand_made_numbers() -> None:
    means = {
        "a": {"none.abs_measured": 0.15, "none.accuracy": 0.40, "none.share_kept_kept": 0.3},
        "b": {"none.abs_measured": 0.12, "none.accuracy": 0.30, "none.share_kept_kept": 0.9},
    }
    dist = ps.distances(means)
    assert dist["a"]["none.abs_measured"] == pytest.approx(abs(0.15 - PAPER["none"]["abs"]))
    assert dist["b"]["none.accuracy"] == pytest.approx(abs(0.30 - PAPER["none"]["accuracy"]))
    v = ps.verdict(dist)
    # a: accuracy (0.019 vs 0.081) and share kk (|0.3 − 0.2916| vs 0.61); b: |ΔE| (0.0007)
    assert v["best"] == {
        "none.abs_measured": "b",
        "none.accuracy": "a",
        "none.share_kept_kept": "a",
    }
    assert v["wins"] == {"a": 2, "b": 1} and v["closest"] == ["a"] and v["numbers"] == 3
    assert v["closer_than"] == {"a": {"a": 0, "b": 2}, "b": {"a": 1, "b": 0}} and v[
        "beats_all"
    ] == ["a"]
    tie = ps.verdict({"a": {"x": 1.0, "y": 2.0}, "b": {"x": 2.0, "y": 1.0}})
    assert tie["closest"] == ["a", "b"]
    issue = ps.distances({"a": {"targeted-weight.share_pruned_pruned": 0.01}}, "issue")
    assert issue["a"]["targeted-weight.share_pruned_pruned"] == pytest.approx(0.007)


def test_normalisation_recovers_a_known_n() -> None:
    """Records built so that ½Σ = N_ours · q · |ΔE| with q = 2: the paper's N is then
    ½Σ_paper / (2 |ΔE|_paper), computed here from the published constants."""
    recs = []
    for reg, q in (("none", 2.0), ("targeted-weight", 2.0)):
        for m in (0.1, 0.2):
            half = 10_000 * q * m
            own = {"half_pp": half, "shares": [1, 0, 0]}
            drawn = {"half_pp": half / 2, "shares": [1, 0, 0]}
            recs.append(
                dict(regulariser=reg, n_images=10_000, abs_measured=m, fig_measured=-m / 2)
                | {"own": own, "drawn": drawn}
            )
    n = ps.normalisation(recs)
    for reg in ("none", "targeted-weight"):
        row = n["rows"][reg]
        want = ps.PUBLISHED_DRAWN[reg]["half_pp"] / (2.0 * PAPER[reg]["abs"])
        assert row["implied_n"]["median"] == round(want)
        assert row["q_table1"]["median"] == pytest.approx(2.0)
        assert row["q_figure_set"]["median"] == pytest.approx(4.0)
        assert row["drawn_over_own"]["median"] == pytest.approx(0.5)
    # q has no spread here, so a candidate fits only if it is exactly the implied N
    assert n["fits_both"] == [] and n["rows"]["none"]["fits"] == []
    assert n["rows"]["none"]["literal_n"] == round(6521.484 / 0.120698)


def test_markdown_numbers_come_from_the_json(quick) -> None:
    _, study = quick
    md = ps.study_markdown(study)
    rows = [ln for ln in md.splitlines() if ln.startswith("| none |") or "targeted dropout |" in ln]
    assert len(rows) == 2 * 3
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        reg = "none" if cells[0] == "none" else "targeted-weight"
        if cells[1] == "paper":
            assert float(cells[2]) == pytest.approx(PAPER[reg]["abs"], abs=5e-5)
            assert float(cells[4].rstrip("%")) == pytest.approx(100 * PAPER[reg]["accuracy"])
            continue
        m = study["means"][cells[1]]
        assert float(cells[3]) == pytest.approx(m[f"{reg}.abs_measured"], abs=5e-5)
        assert float(cells[5].rstrip("%")) == pytest.approx(
            100 * m[f"{reg}.pruned_accuracy"], abs=5e-3
        )
        assert float(cells[8]) == pytest.approx(m[f"{reg}.share_pruned_pruned"], abs=5e-4)
    v = study["verdict"]
    said = re.search(r"Closest to the paper: \*\*(.+?)\*\*.+? on (\d+) of the (\d+)", md)
    assert said.group(1).split(" and ") == v["closest"]
    assert int(said.group(2)) == v["wins"][v["closest"][0]] and int(said.group(3)) == 14
    top = v["wins"][v["closest"][0]]
    assert (f"{top} of the 14 numbers (a majority" in md) == (top >= 8)
    for reg, name in (("none", "none"), ("targeted-weight", "targeted dropout")):
        r = study["delta_e_normalisation"]["rows"][reg]
        assert f"N = {r['literal_n']:,} ({name})" in md or f"and {r['literal_n']:,} ({name})" in md
        assert f"{r['implied_n']['median']:,.0f} ({r['implied_n']['min']:,.0f}–" in md


def test_cli_writes_the_json_atomically(tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "protocol_study.json").write_text('{"old": true}')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ps, "run_study", interrupted)
    assert ps.main(["--out", str(out), "--runs", str(tmp_path / "r"), "--quiet"]) == 130
    assert json.loads((out / "protocol_study.json").read_text()) == {"old": True}

    def one_record(*args, **kwargs):
        rec = {"n_images": 1, "abs_measured": 0.1, "fig_measured": 0.1, "protocol": "sgd"}
        rec |= {"abs_estimate": 0.1, "accuracy": 0.4, "pruned_accuracy": 0.3}
        blocks = {"shares": [0.5, 0.3, 0.2], "half_pp": 1.0}
        rec |= {"own": blocks, "drawn": blocks, "clipped": blocks}
        return [rec | {"regulariser": r, "seed": 0} for r in ("none", "targeted-weight")]

    monkeypatch.setattr(ps, "run_study", one_record)

    def failing_dumps(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as mp:
        mp.setattr("td_analysis.utils.io.json.dumps", failing_dumps)
        with pytest.raises(RuntimeError):
            ps.main(["--out", str(out), "--runs", str(tmp_path / "r"), "--quiet"])
    assert json.loads((out / "protocol_study.json").read_text()) == {"old": True}
    assert ps.main(["--out", str(out), "--runs", str(tmp_path / "r"), "--quiet"]) == 0
    assert json.loads((out / "protocol_study.json").read_text())["verdict"]["closest"] == ["sgd"]
    assert sorted(p.name for p in out.iterdir()) == ["protocol_study.json"]


@pytest.mark.skipif(not REFERENCE_IMAGES.is_dir(), reason="published images not here")
def test_published_images_decode_to_the_constants() -> None:
    for reg, name in (("none", "unregularised"), ("targeted-weight", "targeted_dropout")):
        V = ps.decode_published_figure(REFERENCE_IMAGES / f"figure1_{name}.png").numpy()
        assert np.array_equal(V, V.T)  # C is symmetric: a misread grid is not
        pruned = np.arange(100) >= 25
        assert shares(V, pruned) == pytest.approx(ps.PUBLISHED_DRAWN[reg]["shares"], abs=1e-5)
        assert 0.5 * V[25:, 25:].sum() == pytest.approx(
            ps.PUBLISHED_DRAWN[reg]["half_pp"], abs=1e-3
        )


def test_drawn_values_read_back_at_the_colour_centre() -> None:
    C = torch.tensor([-5000.0, -3000.0, -12.0, 0.0, 23.0, 24.0, 1000.0, 2990.0, 4000.0])
    step = 6000 / 256
    want = [-3000 + step / 2, -3000 + step / 2, 0, 0, 0, 3000 - 127.5 * step + step, 0, 0, 0]
    want[6] = -3000 + (int((1000 + 3000) / step) + 0.5) * step
    want[7] = want[8] = 3000 - step / 2
    assert ps.drawn_values(C).tolist() == pytest.approx(want)


def test_table1_md_gets_the_section_only_with_the_json(tmp_path, quick) -> None:
    from td_analysis.report import compat as reports

    assert reports.protocol_study_section(tmp_path) == ""
    (tmp_path / "protocol_study.json").write_text(json.dumps(quick[1]))
    section = reports.protocol_study_section(tmp_path)
    assert section.startswith("\n## Protocol study\n") and "| targeted dropout | paper |" in section
