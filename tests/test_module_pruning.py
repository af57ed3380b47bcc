"""``pruning.module_pruning_masks`` on any model (issue #21) against brute-force python masks.

References, written here from the issue's definitions (not from the package): for a layer's
weight viewed as ``W = weight.reshape(out, -1)`` and k a percent,

* ``"weight"``, scope ``"unit"``: in each row the ⌊k·n/100⌋ smallest ``|w|`` (python ``sorted``
  by ``(|w|, index)``); scope ``"layer"``: the same over the whole matrix;
* ``"unit"``: the ⌊k·out/100⌋ rows of smallest L2 norm (``math.sqrt`` of a python sum), with the
  bias and the next layer's columns where the models below spell out that a layer reads them
  (their expected readers are written out per case, facts about the architectures).

The models are the shared zoo (``tests/zoo.py``).  The semantics are checked by value too: unit
pruning with the outgoing weights computes the network whose unit outputs zero (a forward hook),
and a pruned conv filter before BatchNorm emits BN's constant (the official evaluation).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from zoo import F64, ZOO

from td_analysis.analysis.pruning import (
    apply_masks,
    module_pruning_masks,
    prunable_weight_names,
    select_modules,
    unit_pruning_masks,
    weight_pruning_masks,
)

CASES = {c.name: c for c in ZOO}

# name of zoo case -> (default pruned modules, {module: (reader module, entries per unit) or
# "bn" (a BatchNorm follows: incoming weights only) or None (reader unknown)})
STRUCTURE = {
    "cnn": (["0"], {"0": ("4", 4)}),
    "cnn-bn": (["0", "3"], {"0": "bn", "3": ("7", 4)}),
    "conv1d": (["0", "2"], {"0": ("2", 1), "2": ("5", 3)}),
    "conv3d": (["0"], {"0": ("4", 1)}),
    "resnet-block-bn": (
        ["stem", "block.conv1", "block.conv2"],
        {"stem": None, "block.conv1": None, "block.conv2": None},
    ),
    "transformer-encoder": (
        ["embed", "encoder.self_attn.out_proj", "encoder.linear1", "encoder.linear2"],
        dict.fromkeys(
            ["embed", "encoder.self_attn.out_proj", "encoder.linear1", "encoder.linear2"]
        ),
    ),
    "weight-sharing": (["inp", "shared"], {"inp": None, "shared": None}),
    "densenet": (
        ["layers.0", "layers.1"],
        {"layers.0": ("layers.1", 1), "layers.1": ("layers.2", 1)},
    ),
}
NAMES = list(STRUCTURE)
KS = (0, 10, 25, 50, 75, 90, 100)


def build(name: str):
    return CASES[name].build()


def rows_of(model: nn.Module, module: str) -> list[list[float]]:
    w = model.get_submodule(module).weight.detach()
    return w.reshape(w.shape[0], -1).tolist()


def ref_smallest(values: list[float], m: int) -> set[int]:
    """Indices of the m smallest values, ties by index (python sorted)."""
    return set(sorted(range(len(values)), key=lambda i: (values[i], i))[:m])


def ref_weight(model: nn.Module, module: str, k: int, scope: str) -> torch.Tensor:
    rows = rows_of(model, module)
    out, n = len(rows), len(rows[0])
    mask = [[False] * n for _ in range(out)]
    if scope == "unit":
        for o, row in enumerate(rows):
            for i in ref_smallest([abs(v) for v in row], k * n // 100):
                mask[o][i] = True
    else:
        flat = [abs(v) for row in rows for v in row]
        for j in ref_smallest(flat, k * len(flat) // 100):
            mask[j // n][j % n] = True
    shape = model.get_submodule(module).weight.shape
    return torch.tensor(mask).reshape(shape)


def ref_units(model: nn.Module, module: str, k: int) -> list[int]:
    rows = rows_of(model, module)
    norms = [math.sqrt(sum(v * v for v in row)) for row in rows]
    return sorted(ref_smallest(norms, k * len(rows) // 100))


def ref_unit_masks(model: nn.Module, name: str, k: int) -> dict[str, torch.Tensor]:
    modules, readers = STRUCTURE[name]
    masks: dict[str, torch.Tensor] = {}

    def add(key: str, mask: torch.Tensor) -> None:
        masks[key] = masks[key] | mask if key in masks else mask

    for module in modules:
        layer = model.get_submodule(module)
        units = ref_units(model, module, k)
        w = torch.zeros(layer.weight.shape, dtype=torch.bool)
        w[units] = True
        add(f"{module}.weight", w)
        reader = readers[module]
        if reader == "bn":
            continue
        if layer.bias is not None:
            b = torch.zeros(layer.bias.shape, dtype=torch.bool)
            b[units] = True
            add(f"{module}.bias", b)
        if reader is not None:
            nxt, per = reader
            nw = model.get_submodule(nxt).weight
            cols = torch.zeros(nw.shape, dtype=torch.bool)
            for o in units:
                cols[:, o * per : (o + 1) * per] = True
            add(f"{nxt}.weight", cols)
    return masks


def assert_same_masks(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, mask in want.items():
        assert got[key].dtype == torch.bool and got[key].shape == mask.shape, key
        assert torch.equal(got[key].cpu(), mask), key


# ----------------------------------------------------------------------------- masks
@pytest.mark.parametrize("name", NAMES)
def test_default_modules_are_every_linear_and_conv_but_the_output_layer(name):
    model, _, _ = build(name)
    assert [n for n, _ in select_modules(model)] == STRUCTURE[name][0]
    assert prunable_weight_names(model) == [f"{m}.weight" for m in STRUCTURE[name][0]]


@pytest.mark.parametrize("scope", ["unit", "layer"])
@pytest.mark.parametrize("name", NAMES)
def test_weight_masks_match_brute_force(name, scope):
    model, _, _ = build(name)
    for k in KS:
        got = module_pruning_masks(model, "weight", k, scope=scope)
        want = {f"{m}.weight": ref_weight(model, m, k, scope) for m in STRUCTURE[name][0]}
        assert_same_masks(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_unit_masks_match_brute_force(name):
    model, _, _ = build(name)
    for k in KS:
        assert_same_masks(module_pruning_masks(model, "unit", k), ref_unit_masks(model, name, k))


def test_ties_are_broken_by_position_and_counts_are_exact():
    model = nn.Sequential(nn.Conv2d(1, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -1.0, 1.0, 0.5]).repeat(4, 1).reshape(4, 1, 2, 2))
    got = module_pruning_masks(model, "weight", 50)["0.weight"].reshape(4, 4)
    # per filter: |w| = 1, 1, 1, .5 -> the 0.5 and the first 1
    assert got.tolist() == [[True, False, False, True]] * 4
    got = module_pruning_masks(model, "unit", 50)["0.weight"]
    assert got.reshape(4, -1).all(1).tolist() == [True, True, False, False]


def test_legacy_densenet_functions_are_module_pruning_masks():
    model, _, _ = build("densenet")
    for k in KS:
        assert_same_masks(
            weight_pruning_masks(model, k),
            module_pruning_masks(model, "weight", k, scope="layer"),
        )
        assert_same_masks(unit_pruning_masks(model, k), module_pruning_masks(model, "unit", k))


# ----------------------------------------------------------------------------- semantics
def _zero_units_hook(units):
    def hook(_module, _inputs, output):
        output = output.clone()
        output[:, units] = 0.0
        return output

    return hook


@pytest.mark.parametrize(("name", "module", "after"), [("cnn", "0", "1"), ("conv1d", "0", "1")])
def test_unit_pruning_is_the_network_without_the_units(name, module, after):
    """Removing units with their bias and outgoing weights = the unit outputs zero."""
    model, x, _ = build(name)
    units = ref_units(model, module, 50)
    assert units
    pruned = apply_masks(model, module_pruning_masks(model, "unit", 50, modules=[module]))
    ref = copy.deepcopy(model)
    ref.get_submodule(after).register_forward_hook(_zero_units_hook(units))
    torch.testing.assert_close(pruned(x), ref(x), rtol=1e-12, atol=1e-12)
    assert not torch.equal(pruned(x), model(x))


def test_a_filter_pruned_before_batchnorm_emits_the_bn_constant():
    """The official evaluation: only the filter's incoming weights are zeroed; BN untouched."""
    model, x, _ = build("cnn-bn")
    masks = module_pruning_masks(model, "unit", 50, modules=["0"])
    assert list(masks) == ["0.weight"]
    units = ref_units(model, "0", 50)
    pruned = apply_masks(model, masks)
    seen = {}
    pruned[1].register_forward_hook(lambda m, i, o: seen.update(out=o))
    pruned(x)
    bn, conv = model[1], model[0]
    assert units and conv.bias is not None
    for o in units:
        # conv output = its bias b_o (weights zeroed) -> BN: γ (b_o − μ)/√(σ²+ε) + β
        want = bn.weight[o] * (conv.bias[o] - bn.running_mean[o])
        want = want / torch.sqrt(bn.running_var[o] + bn.eps) + bn.bias[o]
        out = seen["out"][:, o].detach()
        torch.testing.assert_close(out, torch.full_like(out, float(want.detach())))


@pytest.mark.parametrize("kind", ["weight", "unit"])
@pytest.mark.parametrize("name", ["cnn-bn", "conv1d", "resnet-block-bn", "transformer-encoder"])
def test_torch_prune_custom_from_mask_applies_the_masks(name, kind):
    model, x, _ = build(name)
    masks = module_pruning_masks(model, kind, 50)
    want = apply_masks(model, masks)
    got = copy.deepcopy(model)
    for key, mask in masks.items():
        module, attr = key.rsplit(".", 1)
        # torch's masks say what is kept: the complement of ours
        torch_prune.custom_from_mask(got.get_submodule(module), attr, ~mask)
    for key, mask in masks.items():
        value = got.get_submodule(key.rsplit(".", 1)[0]).get_parameter(
            key.rsplit(".", 1)[1] + "_orig"
        )
        assert torch.equal(value, model.get_parameter(key))  # torch keeps the original
        module, attr = key.rsplit(".", 1)
        assert not getattr(got.get_submodule(module), attr)[mask].any()
    if name != "transformer-encoder":  # MHA reads out_proj.weight without calling out_proj
        torch.testing.assert_close(got(x), want(x), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- selection
def test_modules_by_names_types_and_predicate():
    model, _, _ = build("resnet-block-bn")
    assert list(module_pruning_masks(model, "weight", 50, modules="block.conv2")) == [
        "block.conv2.weight"
    ]
    assert list(module_pruning_masks(model, "weight", 50, modules=nn.Linear)) == ["head.weight"]
    got = module_pruning_masks(model, "weight", 50, modules=lambda n, m: n.startswith("block"))
    assert list(got) == ["block.conv1.weight", "block.conv2.weight"]
    got = module_pruning_masks(model, "weight", 50, modules=["head", nn.Conv2d])
    assert list(got) == ["stem.weight", "block.conv1.weight", "block.conv2.weight", "head.weight"]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_bad_input_is_a_one_line_error_naming_the_problem():
    model, _, _ = build("cnn-bn")
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(model, "weight", 50, modules=["1"])
    assert "'1'" in _one_line(exc) and "BatchNorm2d" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(model, "weight", 50, modules=["conv9"])
    assert "'conv9'" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(model, "weight", 50, modules=nn.LSTM)
    assert "LSTM" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(model, "weight", 50, modules=lambda n, m: False)
    assert "no Linear/Conv" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(model, "global", 50)
    assert "'global'" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(model, "weight", 50, scope="row")
    assert "'row'" in _one_line(exc)
    for k in (-1, 101, float("nan")):
        with pytest.raises(ValueError, match=r"percentage in \[0, 100\]"):
            module_pruning_masks(model, "unit", k)
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(nn.Linear(3, 2), "weight", 50)
    assert "output layer" in _one_line(exc)
    pruned = copy.deepcopy(model)
    torch_prune.l1_unstructured(pruned[0], "weight", amount=0.5)
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(pruned, "weight", 50)
    assert "'0'" in _one_line(exc) and "prune.remove" in _one_line(exc)
    param = copy.deepcopy(model)
    torch.nn.utils.parametrize.register_parametrization(param[3], "weight", nn.Identity())
    with pytest.raises(ValueError) as exc:
        module_pruning_masks(param, "unit", 50)
    assert "'3'" in _one_line(exc) and "parametrization" in _one_line(exc)


def test_masks_live_on_the_parameters_device_and_leave_the_model_alone():
    model, _, _ = build("cnn-bn")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = module_pruning_masks(model, "unit", 75)
    for key, mask in masks.items():
        assert mask.device == model.get_parameter(key).device
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
    assert model[0].weight.dtype == F64
