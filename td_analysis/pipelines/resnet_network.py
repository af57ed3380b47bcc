"""One trained ResNet of the ``resnet-cifar10`` experiment, evaluated: its readings, its pruning
records and its accuracy on each evaluation split (used by :mod:`td_analysis.pipelines.resnet`,
which re-exports every name here).

Why the evaluation splits matter: the CIFAR-10 copy of ``../shared/data`` holds the test images
0–999 exact and 1,000–9,999 decoded from JPEG copies (its README), which costs a convnet about
6 points that exact images would not.  The holdout split (training images held out, exact) is
the clean set; :func:`split_pruning_records` evaluates every pruning there, so the pruning
tables can be read on exact images (``ResNetSettings.pruning_split``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from td_analysis.pipelines.common import analysis_cache_path, load_split, read_cached_analysis
from td_analysis.report.resnet import PRUNING_KINDS
from td_analysis.training.tasks import RESNET_REGULARISERS, get_task
from td_analysis.utils.io import atomic_write_json

__all__ = [
    "resnet_split",
    "build_network",
    "pruned_layer_names",
    "zero_targeted",
    "readings",
    "pruning_records",
    "trained_readings",
    "split_accuracy",
    "split_pruning_records",
    "EVALUATION_FIELDS",
    "evaluation_path",
    "network_evaluation",
]

#: the settings that shape :func:`network_evaluation` (with the checkpoint's bytes, its key)
EVALUATION_FIELDS = (
    "pruning_split",
    "ks",
    "eval_limit",
    "test_limit",
    "exact_test_images",
    "bn_recalibration",
)


def resnet_split(
    split: str, data_root: str | Path | None, limit: int | None, download: bool = False
) -> tuple[Tensor, Tensor]:
    """``(inputs, labels)`` of one split of the task's data set (its preprocessing), the first
    ``limit`` images (``None``: all)."""
    from td_analysis.training.loop import TrainConfig

    task = get_task("resnet-cifar10")
    config = TrainConfig(
        dataset=task.dataset, preprocessing=task.preprocessing, in_features=task.in_features
    )
    return load_split(config, split, root=data_root, limit=limit, download=download)


def build_network(settings, seed: int) -> nn.Module:
    """The seeded, freshly initialised network of ``settings`` (a
    :class:`~td_analysis.pipelines.resnet.ResNetSettings`; global RNG left untouched)."""
    from td_analysis.nets.resnet import PreActResNet

    a = settings.arch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PreActResNet(
            a["units"],
            a["widths"],
            init_filters=a["init_filters"],
            init_kernel=a["init_kernel"],
            num_classes=settings.task_def.num_classes,
        )


def pruned_layer_names(model: nn.Module) -> list[str]:
    """The convs pruned and targeted: every Linear/Conv but the first (init conv) and the last
    (logits), in ``named_modules()`` order."""
    from td_analysis.nn.regularisers import layer_modules

    return [n for n, _ in layer_modules(model)[1:-1]]


def zero_targeted(model: nn.Module, regulariser: str) -> nn.Module:
    """The official evaluation of a targeted-dropout network: a copy with every targeted entry
    (the γ fraction of each filter's weights, or of the filters, by magnitude) zeroed."""
    from td_analysis.analysis.pruning import apply_masks, module_pruning_masks

    spec = RESNET_REGULARISERS[regulariser]
    kind = spec["kind"].removeprefix("targeted-")
    masks = module_pruning_masks(
        model, kind, 100 * spec["gamma"], modules=pruned_layer_names(model)
    )
    return apply_masks(model, masks)


def readings(
    model: nn.Module, regulariser: str, recalibrate_on: Tensor | None = None
) -> dict[str, nn.Module]:
    """The networks a trained one is analysed as: ``trained`` and, for targeted dropout,
    ``zero-targeted`` (:func:`zero_targeted`); each with its BatchNorm statistics re-estimated
    on ``recalibrate_on`` when given (:func:`td_analysis.nn.recalibrate_batchnorm`)."""
    from td_analysis.nn.batchnorm import recalibrate_batchnorm

    out = {"trained": model}
    if RESNET_REGULARISERS[regulariser]["kind"].startswith("targeted"):
        out["zero-targeted"] = zero_targeted(model, regulariser)
    if recalibrate_on is not None:
        out = {k: recalibrate_batchnorm(v, recalibrate_on) for k, v in out.items()}
    return out


def pruning_records(
    model: nn.Module, inputs: Tensor, targets: Tensor, ks: Sequence[float]
) -> list[dict]:
    """``{"kind", "k", "accuracy", "loss", "zero_share"}`` after weight and unit pruning of the
    pruned convs at every k (``zero_share``: the share of their weights that are zero)."""
    from td_analysis.analysis.pruning import apply_masks, module_pruning_masks
    from td_analysis.training.loop import evaluate

    names = pruned_layer_names(model)
    out = []
    for kind in PRUNING_KINDS:
        for k in ks:
            masks = module_pruning_masks(model, kind, k, modules=names) if k > 0 else {}
            pruned = apply_masks(model, masks)
            mods = dict(pruned.named_modules())
            zeros = sum(int((mods[n].weight == 0).sum()) for n in names)
            total = sum(mods[n].weight.numel() for n in names)
            ev = evaluate(pruned, inputs, targets, batch_size=1000)
            out.append(
                {
                    "kind": kind,
                    "k": float(k),
                    "accuracy": ev["accuracy"],
                    "loss": ev["loss"],
                    "zero_share": zeros / total,
                }
            )
    return out


def trained_readings(settings, networks: Sequence[dict], data_root=None):
    """Yield ``(network, readings)`` for each finished network ``{"regulariser", "seed",
    "checkpoint"}``: its checkpoint loaded and :func:`readings` of it, BatchNorm statistics
    re-estimated on the first ``settings.bn_recalibration`` training images as the analysis
    does (one thread's CPU work; the network is built by :func:`build_network`)."""
    from td_analysis.nn.regularisers import remove_regularisers
    from td_analysis.training.fit import load_fit_checkpoint

    task = settings.task_def
    recal = None
    if settings.bn_recalibration:
        recal = resnet_split(task.train_split, data_root, settings.bn_recalibration)[0]
    for net in networks:
        model = build_network(settings, net["seed"])
        model.load_state_dict(load_fit_checkpoint(net["checkpoint"])["model"])
        model = remove_regularisers(model).cpu().eval()
        yield net, readings(model, net["regulariser"], recal)


def _accuracy_splits(settings, data_root) -> list[tuple[str, Tensor, Tensor]]:
    """``(name, inputs, labels)`` of each split :func:`split_accuracy` evaluates."""
    task = settings.task_def
    xh, yh = resnet_split(task.eval_split, data_root, settings.eval_limit)
    xt, yt = resnet_split(task.test_split, data_root, settings.test_limit)
    splits = [("holdout", xh, yh), ("test", xt, yt)]
    if settings.exact_test_images:
        n = min(settings.exact_test_images, xt.shape[0])
        splits.append(("test-exact", xt[:n], yt[:n]))
    return splits


def _pruning_split(settings, split: str, data_root) -> tuple[Tensor, Tensor]:
    """The images :func:`split_pruning_records` evaluates on (``"holdout"``/``"test-exact"``)."""
    task = settings.task_def
    if split == "holdout":
        return resnet_split(task.eval_split, data_root, settings.eval_limit)
    if split == "test-exact":
        if not settings.exact_test_images:
            raise ValueError("split 'test-exact' needs exact_test_images ≥ 1")
        return resnet_split(task.test_split, data_root, settings.exact_test_images)
    raise ValueError(f"split must be 'holdout' or 'test-exact', got {split!r}")


def _accuracy_records(net: dict, nets: dict[str, nn.Module], splits) -> list[dict]:
    from td_analysis.training.loop import evaluate

    out = []
    for name, x, y in splits:
        ev = evaluate(nets["trained"], x, y, batch_size=1000)
        out.append(
            {
                "regulariser": net["regulariser"],
                "seed": net["seed"],
                "reading": "trained",
                "split": name,
                "n": int(x.shape[0]),
                "accuracy": ev["accuracy"],
                "loss": ev["loss"],
            }
        )
    return out


def _split_records(settings, net: dict, nets, split: str, x: Tensor, y: Tensor) -> list[dict]:
    tag = {"regulariser": net["regulariser"], "seed": net["seed"]}
    return [
        {**tag, "reading": reading, "split": split, **r}
        for reading, model in nets.items()
        for r in pruning_records(model, x, y, settings.ks)
    ]


def split_accuracy(settings, networks: Sequence[dict], data_root=None) -> list[dict]:
    """Unpruned accuracy of each network (its ``trained`` reading, BatchNorm statistics as the
    analysis has them) on the holdout split (``eval_limit`` images), the test split
    (``test_limit``) and the test split's first ``exact_test_images`` (``"test-exact"``): one
    record ``{regulariser, seed, reading, split, n, accuracy, loss}`` per network and split.

    ``networks``: ``{"regulariser", "seed", "checkpoint"}`` of finished networks.  ``test``
    far below ``test-exact`` says the test images differ (the JPEG copies of the shared data)."""
    splits = _accuracy_splits(settings, data_root)
    out = []
    for net, nets in trained_readings(settings, networks, data_root):
        out += _accuracy_records(net, nets, splits)
    return out


def split_pruning_records(
    settings,
    networks: Sequence[dict],
    data_root=None,
    *,
    split: str = "holdout",
    on_network: Callable[[dict], None] | None = None,
) -> list[dict]:
    """The pruning records of every network and reading (:func:`pruning_records` at
    ``settings.ks``) on another split than the analysis's test split: ``"holdout"`` (its
    first ``eval_limit`` images, exact training images held out) or ``"test-exact"`` (the test
    split's first ``exact_test_images``).  Each record ``{regulariser, seed, reading, split,
    kind, k, accuracy, loss, zero_share}``; ``on_network(network)`` after each network."""
    x, y = _pruning_split(settings, split, data_root)
    out = []
    for net, nets in trained_readings(settings, networks, data_root):
        out += _split_records(settings, net, nets, split, x, y)
        if on_network is not None:
            on_network(net)
    return out


def evaluation_path(settings, network: dict) -> Path:
    """``<checkpoint folder>/analysis/<checkpoint stem>-evaluation-<key>.json``: where
    :func:`network_evaluation` keeps one network's evaluation; the key covers the checkpoint's
    bytes, the regulariser and seed and :data:`EVALUATION_FIELDS` of ``settings``."""
    checkpoint = Path(network["checkpoint"])
    fields = {
        "regulariser": network["regulariser"],
        "seed": network["seed"],
        **{k: _plain(getattr(settings, k)) for k in EVALUATION_FIELDS},
    }
    return analysis_cache_path(
        checkpoint.parent / "analysis", f"{checkpoint.stem}-evaluation", fields, checkpoint
    )


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def network_evaluation(settings, network: dict, data_root=None) -> dict:
    """One finished network's :func:`split_accuracy` records (``"split_accuracy"``) and, unless
    ``settings.pruning_split`` is ``"test"``, its :func:`split_pruning_records` on that split
    (``"split_records"``), from one load and BatchNorm recalibration.  Kept at
    :func:`evaluation_path` and reused (``"reused_evaluation"`` says so), so a finished grid
    evaluates again only the networks or settings that changed.  Runs in the network's worker
    (:func:`td_analysis.pipelines.resnet.analyse_resnet`), so the networks evaluate in parallel."""
    cached = evaluation_path(settings, network)
    kept = read_cached_analysis(cached)
    if kept is not None:
        return {**kept, "reused_evaluation": True}
    split = settings.pruning_split
    [(net, nets)] = list(trained_readings(settings, [network], data_root))
    result = {"split_accuracy": _accuracy_records(net, nets, _accuracy_splits(settings, data_root))}
    if split != "test":
        x, y = _pruning_split(settings, split, data_root)
        result["split_records"] = _split_records(settings, net, nets, split, x, y)
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cached, result)
    return {**result, "reused_evaluation": False}
