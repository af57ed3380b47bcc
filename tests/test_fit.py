"""td_analysis.training.fit: the autograd training loop for any model.

Reference: a textbook loop written here from the documented protocol (shuffle from
``Generator(seed + 1)``, crop offsets and flips from ``Generator(seed + 2)`` cropped by numpy
(``references.crop_flip_reference``), targeted masks by ``np.sort`` (``targeted_reference``) with
``u ~ torch.rand(Generator(seed + 3))``, SGD with momentum and weight decay and the LR
schedules written out by hand, Adam from ``torch.optim``), sharing nothing with ``fit`` but the
seeds.  Resumption and Ctrl-C are checked against the uninterrupted run, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from references import crop_flip_reference, targeted_reference
from torch import nn
from torch.func import functional_call

from td_analysis.nn.dropout import RegulariserConfig
from td_analysis.training.fit import (
    FitConfig,
    augment_params,
    cifar_augment,
    crop_flip,
    fit,
    load_fit_checkpoint,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _env(one_thread, monkeypatch):
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS", "off")
    yield


def cnn() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    ).to(F64)


def data(n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=F64), torch.randint(0, 5, (n,), generator=g)


# ------------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------------


def test_crop_flip_matches_numpy():
    x = torch.randn(6, 3, 5, 7, dtype=F64)
    i = torch.tensor([0, 8, 3, 4, 1, 8])
    j = torch.tensor([8, 0, 2, 4, 7, 5])
    flip = torch.tensor([False, True, True, False, True, False])
    want = crop_flip_reference(x.numpy(), i.tolist(), j.tolist(), flip.tolist())
    assert np.array_equal(crop_flip(x, i, j, flip).numpy(), want)


def test_augment_params_are_seeded_and_uniform():
    i, j, flip = augment_params(9000, torch.Generator().manual_seed(3))
    i2, j2, flip2 = augment_params(9000, torch.Generator().manual_seed(3))
    assert torch.equal(i, i2) and torch.equal(j, j2) and torch.equal(flip, flip2)
    for t in (i, j):  # uniform on {0, …, 8}: each value about 1000 times
        counts = torch.bincount(t, minlength=9)
        assert counts.numel() == 9
        assert (counts - 1000).abs().max() < 5 * math.sqrt(9000 * (1 / 9) * (8 / 9))
    assert abs(int(flip.sum()) - 4500) < 5 * math.sqrt(9000 * 0.25)
    x = torch.randn(4, 3, 6, 6)
    a = cifar_augment(x, torch.Generator().manual_seed(1))
    b = cifar_augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape


# ------------------------------------------------------------------------------------------------
# The training loop against a textbook reference
# ------------------------------------------------------------------------------------------------


def reference_fit(config: FitConfig, x, y, layers_td=("0", "2")) -> dict[str, torch.Tensor]:
    """The documented protocol, written out (SGD/schedules by hand, masks by np.sort)."""
    model = cnn()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    g_shuffle = torch.Generator().manual_seed(config.seed + 1)
    g_aug = torch.Generator().manual_seed(config.seed + 2)
    g_td = torch.Generator().manual_seed(config.seed + 3)
    reg = config.regulariser
    n, b = x.shape[0], config.batch_size
    total = config.epochs * math.ceil(n / b)
    momentum = {}
    adam = None
    if config.optimizer == "adam":
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        adam = torch.optim.Adam(leaves.values(), lr=config.lr, weight_decay=config.weight_decay)
    t = 0
    reference_fit.clipped = 0
    for _ in range(config.epochs):
        perm = torch.randperm(n, generator=g_shuffle)
        for start in range(0, n, b):
            idx = perm[start : start + b]
            xb, yb = x[idx], y[idx]
            if config.augment:
                i = torch.randint(0, 9, (len(idx),), generator=g_aug)
                j = torch.randint(0, 9, (len(idx),), generator=g_aug)
                f = torch.randint(0, 2, (len(idx),), generator=g_aug).bool()
                xb = torch.from_numpy(crop_flip_reference(xb.numpy(), i, j, f.tolist()))
            p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
            used = dict(p)
            if reg.kind.startswith("targeted"):
                kind = reg.kind.split("-")[1]
                for name in layers_td:  # forward order
                    w = params[f"{name}.weight"]
                    targeted = torch.from_numpy(targeted_reference(w.numpy(), reg.gamma, kind))
                    u = torch.rand(w.reshape(w.shape[0], -1).shape, generator=g_td, dtype=F64)
                    keep = ~(targeted & (u.reshape(w.shape) < reg.alpha))
                    used[f"{name}.weight"] = p[f"{name}.weight"] * keep
            logits = functional_call(model, used, (xb,))
            loss = F.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
            if reg.l1:
                loss = loss + reg.l1 * sum(p[k].abs().sum() for k in p if k.endswith("weight"))
            grads = dict(zip(p, torch.autograd.grad(loss, list(p.values())), strict=True))
            if config.grad_clip is not None:  # rescale to norm ≤ clip (torch's 1e-6 guard)
                norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
                coef = min(1.0, config.grad_clip / (norm + 1e-6))
                reference_fit.clipped += coef < 1.0
                grads = {k: g * coef for k, g in grads.items()}
            if config.schedule == "step":
                lr = config.lr * config.lr_decay ** sum(m <= t for m in config.milestones)
            elif config.schedule == "cosine":
                lr = config.lr * (1 + math.cos(math.pi * t / total)) / 2
            else:
                lr = config.lr
            if adam is not None:
                for k, leaf in leaves.items():
                    leaf.grad = grads[k]
                adam.param_groups[0]["lr"] = lr
                adam.step()
                params = {k: v.detach().clone() for k, v in leaves.items()}
            else:
                for k in params:
                    d = grads[k] + config.weight_decay * params[k]
                    momentum[k] = d if k not in momentum else config.momentum * momentum[k] + d
                    params[k] = params[k] - lr * momentum[k]
            t += 1
    return params


TD = RegulariserConfig(kind="targeted-weight", gamma=0.5, alpha=0.5, layers=[0, 1])
CONFIGS = {
    "sgd-step-augment-td": FitConfig(
        epochs=2,
        batch_size=16,
        lr=0.1,
        weight_decay=1e-3,
        schedule="step",
        milestones=(3, 5),
        lr_decay=0.5,
        augment=True,
        regulariser=TD,
        seed=4,
    ),
    "adam-cosine-unit-l1": FitConfig(
        epochs=2,
        batch_size=20,
        optimizer="adam",
        lr=0.01,
        weight_decay=1e-4,
        schedule="cosine",
        regulariser=RegulariserConfig(
            kind="targeted-unit", gamma=0.5, alpha=0.5, layers=[0, 1], l1=1e-3
        ),
        seed=2,
    ),
    "sgd-clip-smoothing": FitConfig(
        epochs=1, batch_size=16, lr=0.5, grad_clip=0.05, label_smoothing=0.1, seed=0
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fit_matches_the_textbook_loop(name):
    config = CONFIGS[name]
    x, y = data()
    result = fit(cnn(), (x, y), config, eval_data=data(20, seed=1))
    want = reference_fit(config, x, y)
    assert (reference_fit.clipped > 0) == (config.grad_clip is not None)  # clipping did act
    got = result.model.state_dict()  # the plain keys, the trained originals
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, rtol=1e-10, atol=1e-12, msg=k)
    # the eval numbers: eval mode (identity) on the eval data
    xe, ye = data(20, seed=1)
    logits = functional_call(cnn(), want, (xe,))
    last = result.history[-1]
    assert last["eval_loss"] == pytest.approx(float(F.cross_entropy(logits, ye)), rel=1e-9)
    assert last["eval_accuracy"] == int((logits.argmax(1) == ye).sum()) / 20
    assert last["step"] == config.epochs * math.ceil(50 / config.batch_size)


def test_channels_last_gives_the_same_training():
    x, y = data()
    config = CONFIGS["sgd-step-augment-td"]
    on = fit(cnn(), (x, y), FitConfig(**{**config.__dict__, "channels_last": True}))
    assert on.model[0].parametrizations.weight.original.is_contiguous(
        memory_format=torch.channels_last
    )
    # the default on CPU is the contiguous layout (channels_last only on CUDA)
    auto = fit(cnn(), (x, y), config)
    assert auto.model[0].parametrizations.weight.original.is_contiguous()
    off = fit(cnn(), (x, y), FitConfig(**{**config.__dict__, "channels_last": False}))
    for k, v in off.model.state_dict().items():
        torch.testing.assert_close(on.model.state_dict()[k], v, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Checkpoints, resumption, Ctrl-C
# ------------------------------------------------------------------------------------------------


def test_resume_and_ctrl_c_continue_bit_for_bit(tmp_path):
    x, y = data()
    config = FitConfig(**{**CONFIGS["sgd-step-augment-td"].__dict__, "epochs": 3})
    straight = fit(cnn(), (x, y), config)
    path = tmp_path / "run.pt"
    model = cnn()
    calls = {"n": 0}

    def interrupt(module, args):
        calls["n"] += 1
        if calls["n"] == 6:  # in the second epoch (4 steps per epoch)
            raise KeyboardInterrupt

    handle = model.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(model, (x, y), config, checkpoint=path)
    handle.remove()
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no half-written file
    state = load_fit_checkpoint(path)
    assert state["epoch"] == 1 and state["step"] == 4
    plain = cnn()
    plain.load_state_dict(state["model"])  # the plain model takes the checkpoint
    resumed = fit(cnn(), (x, y), config, checkpoint=path, resume=True)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert load_fit_checkpoint(path)["epoch"] == 3
    other = FitConfig(**{**config.__dict__, "lr": 0.2})
    with pytest.raises(ValueError, match="another configuration"):
        fit(cnn(), (x, y), other, checkpoint=path, resume=True)


def test_progress_lines_are_reported(monkeypatch, capsys):
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS", "lines")
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS_INTERVAL", "0")
    fit(cnn(), data(20), FitConfig(batch_size=10))
    err = capsys.readouterr().err
    assert "fit none seed=0: " in err and "2/2 step" in err


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1}, "weight_decay"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_mode": "prune"}, "eval_mode"),
        ({"grad_clip": 0}, "grad_clip"),
        ({"milestones": (0,)}, "milestones"),
        ({"lr_decay": 0}, "lr_decay"),
    ],
)
def test_bad_config_is_refused_in_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        FitConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_data_is_refused_in_one_line():
    x, y = data(10)
    with pytest.raises(ValueError, match="N inputs and N targets") as err:
        fit(cnn(), (x, y[:5]))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="augment needs images"):
        fit(nn.Linear(4, 2), (torch.randn(10, 4), y), FitConfig(augment=True))


def test_amp_on_cpu_trains_close_to_float32():
    """bfloat16 autocast (the CUDA default, here on the CPU): unit roundoff 2^-8 per product,
    so one epoch's mean loss agrees with float32's to a few percent, not to float32 rounding."""
    x, y = data(64)
    model32, model16 = cnn().float(), cnn().float()
    config = FitConfig(epochs=1, batch_size=16, lr=0.05)
    full = fit(model32, (x.float(), y), config)
    amp = fit(model16, (x.float(), y), FitConfig(**{**config.__dict__, "amp": True}))
    a, b = full.history[0]["train_loss"], amp.history[0]["train_loss"]
    assert a != b and abs(a - b) < 0.03 * a
