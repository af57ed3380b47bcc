"""``td_analysis.training.runs.train_many``: parallel processes give the weights of a serial run.

References: ``training.train`` called directly in this process (one thread) for the same
configs; file-system facts (which checkpoints exist, their mtimes) for reuse.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from td_analysis.training.loop import load_checkpoint, train
from td_analysis.training.runs import (
    available_cores,
    config_key,
    run_name,
    snapshot_paths,
    train_many,
)
from td_analysis.training.tasks import get_task

TINY = get_task("fashion-mlp").replace(name="tiny", hidden=(8, 6))


def _data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(120, 784, generator=gen)
    y = torch.randint(0, 10, (120,), generator=gen)
    return {"train": (x[:96], y[:96]), "holdout": (x[96:], y[96:])}


def _configs():
    return [
        TINY.config(regulariser=reg, bias=bias, seed=seed, epochs=2, batch_size=32)
        for reg in ("none", "targeted-weight", "targeted-unit")
        for bias in (True, False)
        for seed in (0, 1)
    ][:6]


@pytest.mark.slow
def test_parallel_runs_equal_serial_runs_and_direct_training(tmp_path: Path) -> None:
    """Bit for bit whatever the number of processes (each run in a fresh process); equal to
    training in this process up to MKL's last bits."""
    data = _data()
    configs = [_configs()[0], _configs()[3]]  # none and targeted-weight
    par = train_many(configs, tmp_path / "par", processes=2, data=data, progress=False)
    # one worker for the second run only (3 process start-ups in all: each costs seconds)
    ser = train_many(configs[1:], tmp_path / "ser", processes=1, data=data, progress=False)
    assert [r.config for r in par] == configs
    first = train(configs[0], train_data=data["train"], progress=False).model
    for p, r in zip(
        load_checkpoint(par[0].path).model.parameters(), first.parameters(), strict=True
    ):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)
    for cfg, a, b in zip(configs[1:], par[1:], ser, strict=True):
        assert a.path.name == b.path.name == f"{run_name(cfg)}.pt"
        ma, mb = load_checkpoint(a.path), load_checkpoint(b.path)
        direct = train(cfg, train_data=data["train"], eval_data=data["holdout"], progress=False)
        assert ma.config == cfg
        for p, q, r in zip(
            ma.model.parameters(), mb.model.parameters(), direct.model.parameters(), strict=True
        ):
            assert torch.equal(p, q)
            torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)
        drop = ("seconds",)  # wall-clock time differs
        strip = [{k: v for k, v in h.items() if k not in drop} for h in a.metrics["history"]]
        assert strip == [
            {k: v for k, v in h.items() if k not in drop} for h in b.metrics["history"]
        ]
        for key in ("train_loss", "eval_loss"):
            assert a.metrics[key] == b.metrics[key]
            assert a.metrics[key] == pytest.approx(direct.final[key], rel=1e-5)


def test_existing_checkpoints_are_reused_and_changed_configs_retrained(tmp_path: Path) -> None:
    data = _data()
    configs = _configs()[:2]
    kw = {"data": data, "progress": False, "in_process": True}
    first = train_many(configs, tmp_path, **kw)
    assert not any(r.reused for r in first)
    stamps = [r.path.stat().st_mtime_ns for r in first]
    again = train_many(configs, tmp_path, **kw)
    assert all(r.reused for r in again)
    assert [r.path.stat().st_mtime_ns for r in again] == stamps
    assert again[0].metrics["eval_accuracy"] == first[0].metrics["eval_accuracy"]
    # a different config never shares the file; a corrupt file is trained again
    changed = configs[0].__class__(**{**configs[0].to_dict(), "lr": 5e-4})
    assert config_key(changed) != config_key(configs[0])
    first[1].path.write_bytes(b"not a checkpoint")
    third = train_many([changed, configs[1]], tmp_path, **kw)
    assert [r.reused for r in third] == [False, False]
    assert load_checkpoint(third[1].path).config == configs[1]
    assert len(list(tmp_path.glob("*.pt"))) == 3
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    forced = train_many(configs[:1], tmp_path, reuse=False, **kw)
    assert not forced[0].reused


def test_bad_arguments(tmp_path: Path) -> None:
    configs = _configs()[:1]
    with pytest.raises(ValueError, match="processes must be ≥ 1"):
        train_many(configs, tmp_path, processes=0)
    with pytest.raises(ValueError, match="same config twice"):
        train_many(configs * 2, tmp_path)
    with pytest.raises(TypeError, match="TrainConfig"):
        train_many([{"lr": 1}], tmp_path)
    assert 1 <= available_cores() <= (os.cpu_count() or 1)


def test_run_names_are_readable_and_distinct() -> None:
    names = [run_name(c) for c in _configs()]
    assert len(set(names)) == len(names)
    assert names[0].startswith("tiny-none-bias-seed0-")
    ramp = TINY.config(regulariser=TINY.regulariser("targeted-weight", ramp_steps=10))
    assert run_name(ramp).startswith("tiny-targeted-weight-ramp-bias-seed0-")


@pytest.mark.parametrize("reg", ["none", "targeted-weight", "targeted-unit"])
def test_snapshots_are_the_shorter_runs_bit_for_bit(tmp_path: Path, reg: str) -> None:
    """A 3-epoch run saving snapshots after epochs 1 and 2 writes exactly the checkpoints that
    1- and 2-epoch runs of the same config write (same process, one thread): reference is the
    shorter run trained on its own."""
    data = _data()
    long = TINY.config(regulariser=reg, seed=3, epochs=3, batch_size=32)
    res = train_many(
        [long], tmp_path / "long", data=data, progress=False, in_process=True, snapshots=(1, 2, 5)
    )
    snaps = snapshot_paths(long, tmp_path / "long", (1, 2, 5))
    assert sorted(snaps) == [1, 2]  # epochs ≥ the run's length are not snapshots
    for e, path in snaps.items():
        short = dataclasses.replace(long, epochs=e)
        ref = train_many(
            [short], tmp_path / f"short{e}", data=data, progress=False, in_process=True
        )[0]
        got = load_checkpoint(path)
        assert got.config == short
        want = load_checkpoint(ref.path)
        for (n, p), (_, q) in zip(
            got.model.state_dict().items(), want.model.state_dict().items(), strict=True
        ):
            assert torch.equal(p, q), n
        assert len(got.metrics["history"]) == e
        assert got.metrics["eval_loss"] == want.metrics["eval_loss"]
    # the long run is reused only while its snapshots exist
    assert train_many(
        [long], tmp_path / "long", data=data, progress=False, in_process=True, snapshots=(1, 2)
    )[0].reused
    snaps[1].unlink()
    again = train_many(
        [long], tmp_path / "long", data=data, progress=False, in_process=True, snapshots=(1, 2)
    )
    assert not again[0].reused and snaps[1].is_file()
    assert res[0].path.is_file()


def test_snapshot_arguments_are_checked() -> None:
    data = _data()
    cfg = TINY.config(epochs=2, batch_size=32)
    with pytest.raises(ValueError, match="snapshots must be epochs"):
        train(cfg, train_data=data["train"], progress=False, snapshots=(1,))
    with pytest.raises(ValueError, match="snapshots must be epochs"):
        train(
            cfg,
            train_data=data["train"],
            progress=False,
            snapshots=(0,),
            on_snapshot=lambda r: None,
        )
