"""The third experiment: the paper's ResNet-32 pruning tables on CIFAR-10 (task
``"resnet-cifar10"``, ``td-analysis reproduce --experiment resnet-cifar10 [--preset cpu|paper]``).

Per network (regulariser × seed; :class:`td_analysis.nets.resnet.PreActResNet` trained with
:func:`td_analysis.training.fit.fit`, per-epoch resumable checkpoints, DDP under ``torchrun``):

* ``pruning.json``: loss and accuracy after the official post-hoc pruning of every conv but
  the init conv (never the logits; :func:`td_analysis.analysis.pruning.module_pruning_masks`, per
  filter) on ``pruning_split`` (default: the exact holdout images; ``pruning_test.json``: the
  same on the whole test split): ``weight`` removes the ⌊k·n/100⌋ smallest |w| of each filter's
  n incoming weights, ``unit`` the ⌊k·F/100⌋ filters of smallest ‖w‖₂ (their incoming weights
  only: BN follows).  Two readings of a targeted-dropout network (REFERENCE.md): ``"trained"``
  (the trained weights) and ``"zero-targeted"`` (the official conv evaluation: the targeted set
  at the training γ zeroed first, then pruned).
* ``taylor.json``: for every pruning (k > 0) and reading, −∇ᵀd, ½dᵀHd (Hessian-vector
  products, float64, mean cross-entropy on ``analysis_examples`` holdout images) and the measured
  ΔE = E(θ − d) − E(θ); Spearman's ρ of each estimator against ΔE.  The diagonal (OBD) estimator
  is left out (P HVPs for a conv net).
* ``coadaptation.json`` (first seed): B × B block sums of θᵀ⊙H⊙θ over the pruned convs'
  weights ordered by |θ| and their layer × layer sums (all weights, and the weights that weight
  pruning at k = 75 deletes), none vs targeted.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from td_analysis.analysis.taylor import grouped_rank_correlations
from td_analysis.catalog.names import PRUNING_SPLITS
from td_analysis.pipelines.common import (
    DTYPES,
    analysis_cache_path,
    collected,
    load_average,
    network_result,
    pooled_maps,
    read_cached_analysis,
)
from td_analysis.pipelines.resnet_network import (
    build_network,
    network_evaluation,
    pruned_layer_names,
    pruning_records,
    readings,
    resnet_split,
    split_accuracy,
    split_pruning_records,
    zero_targeted,
)
from td_analysis.report.resnet import CLAIM_POINTS as CLAIM_POINTS
from td_analysis.report.resnet import (
    PAPER_TABLES,
    PRUNING_KINDS,
    READINGS,
    TAYLOR_ESTIMATORS,
    accuracy_figure,
    coadaptation_figures,
    estimators_figure,
    paper_tables,
    parse_paper_tables,
    pruning_markdown,
    readme,
)
from td_analysis.report.resnet import answer as answer
from td_analysis.training.tasks import RESNET_REGULARISERS, ResNetTask, get_task
from td_analysis.utils.io import atomic_write_json, atomic_write_text, staged_directory
from td_analysis.utils.moved import moved_names

__all__ = [
    "RESNET_KS",
    "PRUNING_SPLITS",
    "PRUNING_KINDS",
    "READINGS",
    "PAPER_TABLES",
    "ResNetSettings",
    "fit_config",
    "build_network",
    "checkpoint_path",
    "pruned_layer_names",
    "zero_targeted",
    "readings",
    "pruning_records",
    "analyse_resnet",
    "rank_correlations",
    "split_accuracy",
    "split_pruning_records",
    "resnet_split",
    "pruning_markdown",
    "parse_paper_tables",
    "paper_tables",
    "reproduce_resnet",
    "accuracy_figure",
    "estimators_figure",
    "coadaptation_figures",
    "load_results",
]

RESNET_KS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)
_ARCH = ("units", "widths", "init_filters", "init_kernel")
_FIT = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "milestones",
    "grad_clip",
    "label_smoothing",
    "augment",
)


@dataclass
class ResNetSettings:
    """What ``reproduce --experiment resnet-cifar10`` runs: a preset of the task, with
    overrides (``None``: the preset's).  :meth:`quick` is the CI setting.

    ``train_limit``/``eval_limit``/``test_limit``: only the first images of the train split,
    of the holdout split used for the per-epoch evaluation, and of the test split.
    ``device``: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``.  ``hvp_chunk``: images
    per Hessian-vector-product chunk (conv activations of a vmapped HVP take ~20 MB per image
    and column in float64 for the cpu preset's network: 25 keeps a process under 2 GB).
    ``bn_recalibration``: training images on which each analysed network's BatchNorm statistics
    are re-estimated first, per reading (:func:`td_analysis.nn.recalibrate_batchnorm`; 0: the
    running statistics of training, as the official code evaluates).  The default is 4,000:
    a network trained with targeted unit dropout keeps the statistics of its dropped filters
    and evaluates at chance without it (measured: 15 % → 70 % test accuracy at the cpu preset).
    ``exact_test_images``: how many of the test split's first images are also evaluated apart
    (:func:`split_accuracy`): the CIFAR-10 copy of ``../shared/data`` has its test images
    0–999 exact and 1,000–9,999 decoded from JPEG copies (its README), which costs a convnet
    points that a clean test set would not (0: skip).
    ``pruning_split``: where ``pruning.json`` and the reports evaluate each pruning:
    ``"holdout"`` (the first ``eval_limit`` holdout images: exact, and the default),
    ``"test-exact"`` (the exact test images) or ``"test"`` (the whole test split; the analysis
    always evaluates there too, kept in ``pruning_test.json``).
    """

    preset: str = "cpu"
    task: str = "resnet-cifar10"
    seeds: tuple[int, ...] | None = None
    regularisers: tuple[str, ...] | None = None
    ks: tuple[float, ...] = RESNET_KS
    epochs: int | None = None
    units: tuple[int, ...] | None = None
    widths: tuple[int, ...] | None = None
    init_filters: int | None = None
    train_limit: int | None = None
    eval_limit: int | None = 2000
    test_limit: int | None = None
    analysis_split: str = "holdout"
    analysis_examples: int = 1000
    taylor_dtype: str = "float64"
    pooled_bins: int = 32
    pooled_dtype: str = "float32"
    hvp_chunk: int = 25
    workers: int = 2
    device: str = "auto"
    bn_recalibration: int = 4000
    exact_test_images: int = 1000
    pruning_split: str = "holdout"

    @classmethod
    def quick(cls, **overrides) -> ResNetSettings:
        """A narrow ResNet-8 (8/16/32 filters), 2 epochs on 4,000 images, 3 regularisers, one
        seed: the whole pipeline in under 3 minutes on the 2-core machine."""
        defaults = dict(
            preset="cpu",
            seeds=(0,),
            regularisers=("none", "targeted-weight-a0.66-g0.75", "targeted-unit-a0.66-g0.75"),
            ks=(0, 25, 50, 75, 90),
            epochs=2,
            units=(1, 1, 1),
            widths=(8, 16, 32),
            init_filters=8,
            train_limit=4000,
            eval_limit=500,
            test_limit=1000,
            analysis_examples=100,
            pooled_bins=8,
            device="cpu",
            bn_recalibration=500,
        )
        defaults.update(overrides)
        return cls(**defaults)

    def __post_init__(self) -> None:
        from td_analysis.analysis.pruning import validate_percent

        task = self.task_def
        preset = task.preset(self.preset)  # raises on an unknown preset
        if self.seeds is None:
            self.seeds = tuple(preset["seeds"])
        if self.regularisers is None:
            self.regularisers = tuple(preset["regularisers"])
        self.seeds = tuple(int(s) for s in self.seeds)
        self.regularisers = tuple(self.regularisers)
        unknown = [r for r in self.regularisers if r not in RESNET_REGULARISERS]
        if unknown:
            raise ValueError(
                f"unknown regularisers {unknown}; choose from {', '.join(RESNET_REGULARISERS)}"
            )
        self.ks = tuple(validate_percent(k) for k in self.ks)
        for name in ("units", "widths"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.seeds or not self.regularisers or not self.ks:
            raise ValueError("seeds, regularisers and ks must not be empty")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        for name in ("taylor_dtype", "pooled_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(
                    f"{name} must be one of {tuple(DTYPES)}, got {getattr(self, name)}"
                )
        if min(self.analysis_examples, self.pooled_bins, self.workers, self.hvp_chunk) < 1:
            raise ValueError("analysis_examples, pooled_bins, workers and hvp_chunk must be ≥ 1")
        if self.epochs is not None and self.epochs < 0:
            raise ValueError(f"epochs must be ≥ 0, got {self.epochs}")
        if self.bn_recalibration < 0:
            raise ValueError(f"bn_recalibration must be ≥ 0 images, got {self.bn_recalibration}")
        if self.exact_test_images < 0:
            raise ValueError(f"exact_test_images must be ≥ 0, got {self.exact_test_images}")
        if self.pruning_split not in PRUNING_SPLITS:
            raise ValueError(
                f"pruning_split must be one of {PRUNING_SPLITS}, got {self.pruning_split!r}"
            )
        if self.pruning_split == "test-exact" and not self.exact_test_images:
            raise ValueError("pruning_split 'test-exact' needs exact_test_images ≥ 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")

    @property
    def task_def(self) -> ResNetTask:
        """The registered :class:`~td_analysis.training.tasks.ResNetTask`."""
        task = get_task(self.task)
        if not isinstance(task, ResNetTask):
            raise ValueError(f"task {self.task!r} is no ResNet task")
        return task

    @property
    def resolved(self) -> dict:
        """The preset with this run's overrides: architecture and training settings."""
        p = self.task_def.preset(self.preset)
        for name in ("epochs", "units", "widths", "init_filters"):
            if getattr(self, name) is not None:
                p[name] = getattr(self, name)
        return p

    @property
    def arch(self) -> dict:
        """Constructor arguments of the network."""
        p = self.resolved
        return {k: (list(p[k]) if isinstance(p[k], tuple) else p[k]) for k in _ARCH}

    def to_dict(self) -> dict:
        """A JSON-able dict of the settings."""
        return asdict(self)


# ----------------------------------------------------------------------------- per network
def _device(settings: ResNetSettings) -> str:
    if settings.device == "auto":
        settings_device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        settings_device = settings.device
    if settings_device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return settings_device


def fit_config(settings: ResNetSettings, regulariser: str, seed: int):
    """The :class:`~td_analysis.training.fit.FitConfig` of one network: the preset's training
    settings, the regulariser on every conv but the init conv (:func:`~td_analysis.nets.resnet.
    targeted_layers`), a targeted network evaluated as the official code does
    (``eval_mode="zero-targeted"``)."""
    from td_analysis.nets.resnet import targeted_layers
    from td_analysis.nn.dropout import RegulariserConfig
    from td_analysis.training.fit import FitConfig

    p = settings.resolved
    spec = dict(RESNET_REGULARISERS[regulariser])
    layers = targeted_layers(p["units"])
    if spec["kind"] != "none":
        spec["layers"] = layers
    if spec["kind"].startswith("targeted"):
        spec["draws"] = settings.task_def.draws
    reg = RegulariserConfig(**spec)
    return FitConfig(
        **{k: p[k] for k in _FIT},
        regulariser=reg,
        eval_mode="zero-targeted" if reg.kind.startswith("targeted") else "identity",
        seed=seed,
        device=_device(settings),
        num_threads=1 if _device(settings) == "cpu" else None,
    )


def checkpoint_path(runs_dir: str | Path, settings: ResNetSettings, regulariser: str, seed: int):
    """``<runs>/resnet_cifar10/<preset>-<regulariser>-seed<s>-<hash>.pt``: the hash covers the
    architecture, the training settings and the data limit, so another setting never resumes
    this one's checkpoint."""
    cfg = fit_config(settings, regulariser, seed).to_dict()
    cfg.pop("device"), cfg.pop("num_threads")
    key = json.dumps(
        {"arch": settings.arch, "fit": cfg, "train_limit": settings.train_limit}, sort_keys=True
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return (
        Path(runs_dir)
        / "resnet_cifar10"
        / f"{settings.preset}-{regulariser}-seed{seed}-{digest}.pt"
    )


def _masks_for(model: nn.Module, k: float, kind: str) -> dict[str, Tensor]:
    from td_analysis.analysis.pruning import module_pruning_masks

    return module_pruning_masks(model, kind, k, modules=pruned_layer_names(model))


def coadaptation_maps(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    bins: int,
    *,
    prune_k: float,
    dtype: torch.dtype,
    chunk_size: int | None = None,
) -> dict:
    """Pooled B × B block sums of the |θ|-ordered θᵀ⊙H⊙θ over the pruned convs' weights, their
    layer × layer sums, and those over the weights weight pruning at ``prune_k`` deletes (mean
    loss, one Hessian operator)."""
    from td_analysis.analysis.coadaptation import magnitude_order, pooled_coadaptation_record

    order = magnitude_order(model, [f"{n}.weight" for n in pruned_layer_names(model)])
    masks = _masks_for(model, prune_k, "weight")
    return pooled_coadaptation_record(
        model,
        inputs,
        targets,
        order,
        masks,
        bins,
        prune_k=prune_k,
        dtype=dtype,
        chunk_size=chunk_size,
    )


#: The settings that shape one network's analysis (the rest, e.g. ``seeds`` or ``workers``, do
#: not): part of the key of its kept result.
ANALYSIS_FIELDS = (
    "task",
    "preset",
    "ks",
    "test_limit",
    "analysis_split",
    "analysis_examples",
    "taylor_dtype",
    "pooled_bins",
    "pooled_dtype",
    "hvp_chunk",
    "bn_recalibration",
)  # not exact_test_images: split_accuracy runs after the kept analyses


def analysis_path(job: dict, checkpoint: str | Path) -> Path:
    """``<runs>/resnet_cifar10/analysis/<checkpoint stem>-<key>.json``: the key covers the
    checkpoint's bytes, the regulariser and seed, whether the pooled maps are asked for and
    :data:`ANALYSIS_FIELDS` (:func:`~td_analysis.pipelines.common.analysis_cache_path`)."""
    settings = job["settings"]
    fields = {
        "regulariser": job["regulariser"],
        "seed": job["seed"],
        "pooled": job["pooled"],
        **{k: settings.get(k) for k in ANALYSIS_FIELDS},
    }
    checkpoint = Path(checkpoint)
    return analysis_cache_path(checkpoint.parent / "analysis", checkpoint.stem, fields, checkpoint)


def analyse_resnet(job: dict) -> dict | None:
    """Train (or resume, or load) one network, then its pruning records, Taylor records and (if
    asked) coadaptation maps.  Runs in a worker process; everything in and out is plain data.

    ``job["stage"]``: ``"all"`` (default), ``"train"`` (train only, return ``None``: every
    rank under ``torchrun``) or ``"analyse"`` (load the finished checkpoint, no training: rank
    0 after the DDP training, so no collective waits on the analysis).

    The analysis is kept next to the checkpoint (:func:`analysis_path`) and reused by a later run
    of the same network and analysis settings (``reused_analysis`` then says so): an interrupted
    grid continues where it stopped, also in the analysis."""
    from td_analysis.nn.regularisers import remove_regularisers
    from td_analysis.training.fit import fit, load_fit_checkpoint

    t0 = time.perf_counter()
    stage = job.get("stage", "all")
    settings = ResNetSettings(**job["settings"])
    reg, seed, root = job["regulariser"], job["seed"], job["data_root"]
    task = settings.task_def
    config = fit_config(settings, reg, seed)
    if config.device == "cpu":
        torch.set_num_threads(1)
    model = build_network(settings, seed)
    ckpt = checkpoint_path(job["runs_dir"], settings, reg, seed)
    if stage == "analyse":
        state = load_fit_checkpoint(ckpt)
        if state["epoch"] != config.epochs:
            raise ValueError(f"checkpoint {ckpt} holds epoch {state['epoch']}, not the last")
        model.load_state_dict(state["model"])
        history = state["history"]
    else:
        x, y = resnet_split(task.train_split, root, settings.train_limit)
        xe, ye = resnet_split(task.eval_split, root, settings.eval_limit)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        result = fit(
            model,
            (x.view(-1, 3, 32, 32), y),
            config,
            eval_data=(xe, ye),
            checkpoint=ckpt,
            resume=True,
            progress=job["progress"],
        )
        history = result.history
        if stage == "train":
            return None
        remove_regularisers(model)
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    t_train = time.perf_counter() - t0
    cached = analysis_path(job, ckpt)
    kept = read_cached_analysis(cached)
    if kept is not None:
        result = {**kept, "train_seconds": t_train, "reused_analysis": True}
    else:
        result = _analyse(job, settings, model, history, ckpt, t0, t_train)
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cached, result)
        result = {**result, "reused_analysis": False}
    network = {"regulariser": reg, "seed": seed, "checkpoint": str(ckpt)}
    result.update(network_evaluation(settings, network, root))  # kept apart from the analysis
    return {**result, "seconds": time.perf_counter() - t0}


def _analyse(
    job: dict,
    settings: ResNetSettings,
    model: nn.Module,
    history: list,
    ckpt: Path,
    t0: float,
    t_train: float,
) -> dict:
    """The analysis of one trained network (:func:`analyse_resnet`): both readings' pruning and
    Taylor records, and the pooled maps when the job asks for them."""
    from td_analysis.analysis.taylor import taylor_records

    reg, seed, root = job["regulariser"], job["seed"], job["data_root"]
    task = settings.task_def
    tag = {"regulariser": reg, "seed": seed}
    xt, yt = resnet_split(task.test_split, root, settings.test_limit)
    xa, ya = resnet_split(settings.analysis_split, root, settings.analysis_examples)
    records, taylor = [], []
    dtype = DTYPES[settings.taylor_dtype]
    recal = None
    if settings.bn_recalibration:
        recal = resnet_split(task.train_split, root, settings.bn_recalibration)[0]
    nets = readings(model, reg, recal)
    model = nets["trained"]  # the pooled maps below: of the network as analysed
    for reading, net in nets.items():
        records += [
            {**tag, "reading": reading, **r} for r in pruning_records(net, xt, yt, settings.ks)
        ]
        terms = taylor_records(
            net,
            xa,
            ya,
            settings.ks,
            PRUNING_KINDS,
            dtype=dtype,
            masks=_masks_for,
            diagonal=False,
            chunk_size=settings.hvp_chunk,
        )
        taylor += [{**tag, "reading": reading, **r} for r in terms]
    maps = None
    if job["pooled"]:
        maps = pooled_maps(
            coadaptation_maps, model, xa, ya, tag, settings, task.gamma,
            chunk_size=settings.hvp_chunk,
        )  # fmt: skip
    return network_result(
        tag, records, taylor, maps, t_train, t0, checkpoint=str(ckpt), history=history
    )


# ----------------------------------------------------------------------------- summaries
def rank_correlations(taylor: Sequence[dict]) -> list[dict]:
    """Spearman ρ of each estimator vs the measured ΔE per (regulariser, reading, kind), over
    all seeds and k (kind ``"all"``: both kinds together); NaN with < 3 points or no spread."""
    return grouped_rank_correlations(taylor, ("regulariser", "reading"), TAYLOR_ESTIMATORS)


# ----------------------------------------------------------------------------- outputs
def write_outputs(out: Path, results: dict, command: str) -> None:
    """Every file of ``figures/resnet_cifar10/`` from the collected ``results``."""
    import matplotlib.pyplot as plt

    from td_analysis.report import plotting

    settings = results["settings"]
    records = results["records"]
    atomic_write_json(out / "pruning.json", records)
    test = results.get("test_records")
    atomic_write_text(out / "pruning.md", pruning_markdown(records, settings, test_records=test))
    plotting.save_figure(accuracy_figure(records, settings), out / "accuracy_vs_k.png", ("png",))
    rho = rank_correlations(results["taylor"])
    results["rank_correlations"] = rho
    atomic_write_json(out / "taylor.json", {"records": results["taylor"], "rank_correlations": rho})
    fig = estimators_figure(results["taylor"], settings)
    plotting.save_figure(fig, out / "estimators.png", formats=("png",))
    maps = results["coadaptation"]
    atomic_write_json(out / "coadaptation.json", maps)
    for fig, name in zip(
        coadaptation_figures(maps, settings),
        ("coadaptation_pooled.png", "coadaptation_layers.png"),
        strict=False,
    ):
        plotting.save_figure(fig, out / name, formats=("png",))
    plt.close("all")
    if results.get("test_records"):
        atomic_write_json(out / "pruning_test.json", results["test_records"])
    big = ("records", "test_records", "taylor", "coadaptation")
    summary = {k: v for k, v in results.items() if k not in big}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "README.md", readme(results, command))


def load_results(out_dir: str | Path = "figures/resnet_cifar10") -> dict:
    """What :func:`reproduce_resnet` returned, read back from the files it wrote in ``out_dir``
    (``summary.json`` with ``records`` from ``pruning.json``, ``taylor`` and the rank
    correlations from ``taylor.json``, ``coadaptation`` from ``coadaptation.json``)."""
    out = Path(out_dir)
    names = ("summary.json", "pruning.json", "taylor.json", "coadaptation.json")
    missing = [f for f in names if not (out / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{out} has no {', '.join(missing)}: run `td-analysis reproduce --experiment "
            "resnet-cifar10` first"
        )
    summary = json.loads((out / "summary.json").read_text())
    taylor = json.loads((out / "taylor.json").read_text())
    return {
        **summary,
        "records": json.loads((out / "pruning.json").read_text()),
        "taylor": taylor["records"],
        "rank_correlations": taylor["rank_correlations"],
        "coadaptation": json.loads((out / "coadaptation.json").read_text()),
        **(
            {"test_records": json.loads((out / "pruning_test.json").read_text())}
            if (out / "pruning_test.json").is_file()
            else {}
        ),
    }


def reproduce_resnet(
    settings: ResNetSettings | None = None,
    *,
    out_dir: str | Path = "figures/resnet_cifar10",
    runs_dir: str | Path = "runs",
    data_root: str | Path | None = None,
    progress: bool = True,
    command: str = "td-analysis reproduce --experiment resnet-cifar10",
    scheduler: object = None,
) -> dict | None:
    """Train (or resume) every network, analyse each, and write ``out_dir`` (swapped in whole at
    the end).  Under ``torchrun`` (``WORLD_SIZE`` > 1) the networks train one after the other
    with DDP and rank 0 alone analyses and writes (other ranks return ``None``).  ``scheduler``:
    a Dask scheduler address (or ``distributed.Client``) whose cluster trains and analyses the
    networks instead of ``settings.workers`` local processes
    (:func:`td_analysis.training.executors.map_jobs`; the same results)."""
    from td_analysis.curvature.distributed import init_from_env
    from td_analysis.training.executors import map_jobs
    from td_analysis.utils.progress import progress_bar

    settings = settings or ResNetSettings()
    t0 = time.perf_counter()
    load_start = load_average()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and scheduler is not None:
        raise ValueError("a Dask scheduler and torchrun (WORLD_SIZE > 1) exclude each other")
    rank = init_from_env()[0] if world > 1 else 0
    resnet_split(settings.task_def.test_split, data_root, settings.test_limit)  # data present?
    jobs = [
        {
            "settings": settings.to_dict(),
            "regulariser": reg,
            "seed": seed,
            "runs_dir": str(runs_dir),
            "data_root": None if data_root is None else str(data_root),
            "pooled": seed == settings.seeds[0],
            "progress": progress and (settings.workers == 1 or world > 1),
        }
        for reg in settings.regularisers
        for seed in settings.seeds
    ]
    jobs.sort(key=lambda j: not j["pooled"])  # the longest jobs first
    workers = 1 if world > 1 else max(1, min(settings.workers, len(jobs), os.cpu_count() or 1))
    bar = progress_bar(total=len(jobs), desc="resnet-cifar10 networks", disable=not progress)
    done = []
    if world > 1:  # DDP: every rank trains every network, then rank 0 alone analyses
        import torch.distributed as dist

        for job in jobs:
            analyse_resnet({**job, "stage": "train"})
        dist.barrier()
        if rank == 0:
            for job in jobs:
                done.append(analyse_resnet({**job, "stage": "analyse"}))
                bar.update()
    elif workers == 1 and scheduler is None:
        for job in jobs:
            done.append(analyse_resnet(job))
            bar.update()
    else:  # Ctrl-C / SIGTERM stop the workers within seconds
        # closing: Ctrl-C stops the workers now, not when the generator is collected
        with closing(
            map_jobs(analyse_resnet, jobs, processes=workers, scheduler=scheduler)
        ) as results:
            for _, result in results:
                done.append(result)
                bar.update()
    bar.close()
    if rank != 0:
        return None
    order = {r: i for i, r in enumerate(settings.regularisers)}
    done.sort(key=lambda d: (order[d["tag"]["regulariser"]], d["tag"]["seed"]))
    results = {
        "settings": {**settings.to_dict(), "resolved": _jsonable(settings.resolved)},
        **collected(done),
        "networks": [
            {
                **d["tag"],
                "checkpoint": d["checkpoint"],
                "history": d["history"],
                "train_seconds": d["train_seconds"],
                "seconds": d["seconds"],
            }
            for d in done
        ],
    }
    # each network's job evaluated it on every split too (network_evaluation), in its worker
    results["split_accuracy"] = [r for d in done for r in d["split_accuracy"]]
    results["reused_evaluations"] = sum(bool(d.get("reused_evaluation")) for d in done)
    test_records = [{**r, "split": "test"} for r in results["records"]]
    if settings.pruning_split == "test":
        results["records"] = test_records
    else:  # every pruning again on exact images
        results["records"] = [r for d in done for r in d["split_records"]]
        results["test_records"] = test_records
    with staged_directory(out_dir) as staging:
        results["seconds"] = time.perf_counter() - t0
        results["load_average"] = [load_start, load_average()]
        write_outputs(Path(staging), results, command)
    return results


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def write_reports(out_dir: str | Path = "figures/resnet_cifar10", *, command: str) -> None:
    """``pruning.md`` and ``README.md`` again from the JSON a finished run wrote
    (``pruning.json``, ``summary.json``), without training anything."""
    out = Path(out_dir)
    missing = [f for f in ("summary.json", "pruning.json") if not (out / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{out} has no {', '.join(missing)}: run reproduce_resnet first")
    summary = json.loads((out / "summary.json").read_text())
    records = json.loads((out / "pruning.json").read_text())
    test = out / "pruning_test.json"
    test = json.loads(test.read_text()) if test.is_file() else None
    md = pruning_markdown(records, summary["settings"], test_records=test)
    atomic_write_text(out / "pruning.md", md)
    atomic_write_text(out / "README.md", readme({**summary, "records": records}, command))


#: the ``reproduce --experiment resnet-cifar10`` command (argparse namespace in, exit status out)
#: lives in :mod:`td_analysis.cli.reproduce`; its old name stays importable from here
__getattr__ = moved_names(
    __name__, {"cmd_reproduce_resnet": ("td_analysis.cli.reproduce", "cmd_reproduce_resnet")}
)
