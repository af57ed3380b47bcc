"""Tests of ``td_analysis.report.plotting``: every figure renders headless (Agg), Figure 1 has the
paper's BrBG symmetric scale, and ``save_figure`` writes PNG/PDF atomically."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

from td_analysis.analysis.taylor import ESTIMATORS, PruningEstimate  # noqa: E402
from td_analysis.report import plotting  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _agg(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield
    plt.close("all")


def sym(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=gen, dtype=torch.float64) * scale
    return A + A.T


def images_of(fig: Figure):
    return [im for ax in fig.axes for im in ax.images]


def render(fig: Figure) -> None:
    fig.canvas.draw()
    assert fig.canvas.get_width_height()[0] > 0


# ----------------------------------------------------------------------------- figure 1
def test_figure1_brbg_symmetric_limits():
    C1, C2 = sym(12, 0, 1.0), sym(12, 1, 5.0)  # the shared limit comes from the 2nd
    fig = plotting.figure1(C1, C2)
    assert isinstance(fig, Figure)
    render(fig)
    ims = images_of(fig)
    assert len(ims) == 2  # one heatmap per panel (colorbar axes hold no AxesImage)
    vmax = max(float(C1.abs().max()), float(C2.abs().max()))
    for im in ims:
        assert im.get_cmap().name == "BrBG"
        lo, hi = im.get_clim()
        assert lo == pytest.approx(-vmax) and hi == pytest.approx(vmax)
    np.testing.assert_allclose(ims[0].get_array(), C1.numpy())
    np.testing.assert_allclose(ims[1].get_array(), C2.numpy())
    # a shared colour bar
    assert len(fig.axes) == 3


def test_figure1_honours_published_vmax_and_numpy_input():
    C1, C2 = sym(10, 2, 100.0).numpy(), sym(10, 3, 10.0).numpy()
    fig = plotting.figure1(C1, C2, vmax=plotting.PUBLISHED_VMAX, suptitle="s", titles=("a", "b"))
    assert plotting.PUBLISHED_VMAX == 3000.0
    render(fig)
    for im in images_of(fig):
        assert im.get_clim() == (-3000.0, 3000.0)
        assert im.get_cmap().name == "BrBG"
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]


@pytest.mark.parametrize(
    "C1, C2",
    [
        (torch.zeros(3, 4), torch.zeros(3, 3)),
        (torch.zeros(3, 3), torch.zeros(4, 3)),
        (torch.zeros(3), torch.zeros(3, 3)),
        (np.zeros((2, 2, 2)), np.zeros((2, 2))),
    ],
)
def test_figure1_rejects_non_square(C1, C2):
    with pytest.raises(ValueError):
        plotting.figure1(C1, C2)


def test_symmetric_limit():
    a = torch.tensor([[1.0, -7.0], [2.0, 3.0]])
    b = np.array([[-4.0]])
    assert plotting.symmetric_limit(a, b) == 7.0
    assert plotting.symmetric_limit(torch.zeros(2, 2)) == 1.0  # never a zero range
    vals = np.arange(1, 101, dtype=float)
    assert plotting.symmetric_limit(vals, quantile=0.5) == pytest.approx(np.quantile(vals, 0.5))


def test_plot_coadaptation_own_axes_and_gamma_marker():
    C = sym(8, 4)
    fig = plotting.plot_coadaptation(C, gamma=0.75, title="t")
    render(fig)
    (im,) = images_of(fig)
    v = float(C.abs().max())
    assert im.get_clim() == pytest.approx((-v, v))
    assert im.get_cmap().name == "BrBG"
    ax = im.axes
    # dashed lines where the lowest-magnitude quarter… here the last int(0.75·8) = 6 start
    edge = 8 - 6 - 0.5
    hl = [ln for ln in ax.lines if np.allclose(ln.get_ydata(), edge)]
    vl = [ln for ln in ax.lines if np.allclose(ln.get_xdata(), edge)]
    assert hl and vl
    assert ax.get_title() == "t"
    assert len(fig.axes) == 2  # with its colour bar
    fig2 = plotting.plot_coadaptation(C, gamma=None, colorbar=False, vmax=2.0)
    assert len(fig2.axes) == 1 and not fig2.axes[0].lines
    assert fig2.axes[0].images[0].get_clim() == (-2.0, 2.0)
    with pytest.raises(ValueError):
        plotting.plot_coadaptation(torch.zeros(2, 3))


def test_plot_unit_dependence():
    D = sym(6, 5, 3.0)
    labels = [f"u{i}" for i in range(6)]
    fig = plotting.plot_unit_dependence(D, labels)
    render(fig)
    mesh = fig.axes[0].collections[0]
    v = float(D.abs().max())
    assert mesh.get_clim() == pytest.approx((-v, v))
    # seaborn re-samples the centred colormap (unnamed): compare its colours with BrBG
    brbg = matplotlib.colormaps["BrBG"]
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        np.testing.assert_allclose(mesh.get_cmap()(q), brbg(q), atol=0.02)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == labels
    render(plotting.plot_unit_dependence(D.numpy(), title=None))


# ----------------------------------------------------------------------------- estimates
def estimates(n: int, seed: int) -> list[PruningEstimate]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        measured = float(rng.normal())
        terms = {k: float(rng.normal()) for k in ESTIMATORS}
        terms["estimate"] = measured + 0.1 * float(rng.normal())
        out.append(
            PruningEstimate(
                label="g",
                fraction=i / n,
                n_pruned=i,
                loss=1.0,
                pruned_loss=1.0 + measured,
                accuracy=0.4,
                pruned_accuracy=0.3,
                **terms,
            )
        )
    return out


def test_plot_estimates_panels_and_rho():
    groups = {"none": estimates(8, 0), "targeted dropout": estimates(6, 1), "empty": []}
    fig = plotting.plot_estimates(groups, title="x")
    render(fig)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == len(ESTIMATORS)
    ax_est = axes[list(ESTIMATORS).index("estimate")]
    rho = stats.spearmanr(
        [r.estimate for r in groups["none"]], [r.pruned_loss - r.loss for r in groups["none"]]
    ).statistic
    texts = " ".join(t.get_text() for t in ax_est.texts)
    assert f"none: ρ={rho:.2f}" in texts
    # a point per deletion
    offsets = [len(c.get_offsets()) for c in ax_est.collections]
    assert sorted(offsets) == [6, 8]
    fig = plotting.plot_estimates(groups, estimators=("second_order",))
    assert len([ax for ax in fig.axes if ax.get_title()]) == 1
    with pytest.raises(ValueError):
        plotting.plot_estimates(groups, estimators=("bogus",))


def test_plot_pruning_curves():
    rows = []
    for reg in ("none", "targeted-weight"):
        for seed in (0, 1):
            for kind in ("weight", "unit"):
                for f in (0.0, 0.5, 0.9):
                    rows.append(
                        {
                            "regulariser": reg,
                            "seed": seed,
                            "kind": kind,
                            "fraction": f,
                            "accuracy": 0.4 - 0.2 * f + 0.01 * seed,
                        }
                    )
    fig = plotting.plot_pruning_curves(rows, title="curves")
    render(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["weight pruning", "unit pruning"]
    with pytest.raises(ValueError):
        plotting.plot_pruning_curves([])
    with pytest.raises(ValueError):
        plotting.plot_pruning_curves([{"kind": "weight", "fraction": 0.1}])


# ----------------------------------------------------------------------------- saving
def test_save_figure_png_and_pdf(tmp_path):
    fig = plotting.figure1(sym(10, 6), sym(10, 7))
    out = tmp_path / "sub" / "figure1.png"
    written = plotting.save_figure(fig, out)
    assert written == [tmp_path / "sub" / "figure1.png", tmp_path / "sub" / "figure1.pdf"]
    png, pdf = (p.read_bytes() for p in written)
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["figure1.pdf", "figure1.png"]
    # one format only; the suffix of `path` is replaced
    only = plotting.save_figure(fig, tmp_path / "other.pdf", formats=("png",))
    assert only == [tmp_path / "other.png"]
    assert (tmp_path / "other.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "other.pdf").exists()


def test_save_figure_failure_leaves_no_file(tmp_path, monkeypatch):
    fig = plotting.figure1(sym(6, 8), sym(6, 9))
    target = tmp_path / "fig.png"

    def broken(fname, *args, **kwargs):
        with open(fname, "wb") as f:  # a half-written file under the temporary name
            f.write(PNG_MAGIC[:4])
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        plotting.save_figure(fig, target)
    assert list(tmp_path.iterdir()) == []

    # an existing file is not clobbered by a failed save
    monkeypatch.undo()
    plotting.save_figure(fig, target, formats=("png",))
    before = target.read_bytes()
    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        plotting.save_figure(fig, target, formats=("png",))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
