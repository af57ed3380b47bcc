"""The report files of the fashion-mlp experiment (:mod:`td_analysis.pipelines.fashion_mlp`):
``pruning.json``/``pruning.md``, ``accuracy_differences.png``, ``training_length.md`` and
``README.md``, written from the records (or rewritten from the JSON a finished run left,
``--report-only``) with the text of :mod:`td_analysis.report.fashion`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from td_analysis.report.common import LEVEL
from td_analysis.report.fashion import (
    fashion_difference_panels,
    fashion_pruning_markdown,
    fashion_readme,
)
from td_analysis.report.training_length import fashion_training_length_markdown
from td_analysis.utils.io import atomic_write_json, atomic_write_text

#: a :class:`td_analysis.pipelines.fashion_mlp.FashionSettings` (not imported: reports sit below
#: the pipelines that call them)
FashionSettings = Any

__all__ = [
    "network_text",
    "training_length_study",
    "write_pruning",
    "write_differences",
    "write_reports",
]


def network_text(settings: FashionSettings) -> str:
    """``"784 → 1000 → 1000 → 500 → 200 → 10 ReLU MLP on fashion-mnist"``: the widths and data
    set of the network of ``settings`` (its task, with ``hidden`` overridden)."""
    task = settings.task_def
    widths = (task.in_features, *task.hidden, task.num_classes)
    return f"{' → '.join(map(str, widths))} ReLU MLP on {task.dataset}"


def training_length_study(out: Path) -> dict | None:
    """The training-length study's JSON in ``out`` (``td_analysis.pipelines.training_length``), if
    any."""
    import json

    path = out / "training_length.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_pruning(
    out: Path,
    records: list[dict],
    settings: FashionSettings,
    n_test: int,
    command: str = "td-analysis reproduce --experiment fashion-mlp",
) -> None:
    """``pruning.json`` (the long-form records) and ``pruning.md`` (mean ± std table)."""
    atomic_write_json(out / "pruning.json", records)
    text = fashion_pruning_markdown(
        records,
        network=network_text(settings),
        n_test=n_test,
        settings=settings.to_dict(),
        command=command,
    )
    atomic_write_text(out / "pruning.md", text)
    write_differences(out, records)


def write_differences(out: Path, records: list[dict]) -> None:
    """``accuracy_differences.png``: each regulariser minus none over k, paired by seed, with
    its t band (nothing is drawn for a single seed)."""
    from td_analysis.report import plotting

    panels = fashion_difference_panels(records)
    if not any(any(c for c in lines.values()) for lines in panels.values()):
        return
    seeds = len({r["seed"] for r in records})
    fig = plotting.plot_paired_differences(
        panels,
        xlabel="k: percent of each hidden layer pruned",
        title=f"test accuracy of each regulariser minus none of the same seed, mean and "
        f"{LEVEL:.0%} t band over {seeds} seeds",
    )
    plotting.save_figure(fig, out / "accuracy_differences.png", formats=("png",))


def write_reports(
    out_dir: str | Path = "figures/fashion_mlp",
    *,
    command: str = "td-analysis reproduce --experiment fashion-mlp",
) -> None:
    """``pruning.md``, ``accuracy_differences.png`` and ``README.md`` again from the JSON a
    finished run wrote (``pruning.json``, ``summary.json``), without training anything."""
    import json

    import matplotlib.pyplot as plt

    out = Path(out_dir)
    missing = [f for f in ("summary.json", "pruning.json") if not (out / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{out} has no {', '.join(missing)}: run reproduce_fashion first")
    summary = json.loads((out / "summary.json").read_text())
    records = json.loads((out / "pruning.json").read_text())
    command = summary.get("command", command)
    text = fashion_pruning_markdown(
        records,
        network=summary["network"],
        n_test=summary["n_test"],
        settings=summary["settings"],
        command=command,
    )
    atomic_write_text(out / "pruning.md", text)
    write_differences(out, records)
    plt.close("all")
    study = training_length_study(out)
    if study is not None:  # the training-length study's table
        atomic_write_text(out / "training_length.md", fashion_training_length_markdown(study))
    atomic_write_text(
        out / "README.md",
        fashion_readme(
            summary["settings"],
            network=summary["network"],
            command=command,
            summary=summary,
            training_length=study,
        ),
    )
