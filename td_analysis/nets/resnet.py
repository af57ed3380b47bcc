"""The pre-activation CIFAR ResNet of the official targeted-dropout code (for-ai/TD).

``PreActResNet(units=(5, 5, 5), widths=(32, 64, 128))`` is the paper's "ResNet-32" as the
official code builds it (REFERENCE.md): a ``init_kernel × init_kernel`` init conv with
``init_filters`` filters (stride 1), then one stage per entry of ``units``, each of ``units[s]``
pre-activation units

    x ↦ x' + conv₂(relu(bn₂(conv₁(relu(bn₁(x)))))),   x' = x, or proj(relu(bn₁(x))) in a
    stage's first unit (a 1×1 conv with the stage's stride: 1, 2, 2, …),

then BN → ReLU → global average pool → Linear logits.  Convs carry no bias (BN follows).
Registration order puts ``init_conv`` first and ``logits`` last among the Linear/Conv modules,
so layer index 0 is the init conv and the last index the logits (:func:`targeted_layers`
returns every index in between: the convs the official code targets and prunes).
Initialisation: Glorot-normal weights (the official ``glorot_normal``), zero logit bias.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["PreActUnit", "PreActResNet", "resnet32", "targeted_layers", "layer_count"]


class PreActUnit(nn.Module):
    """One pre-activation residual unit (module doc); ``proj`` is a 1×1 conv or ``None``."""

    def __init__(self, cin: int, cout: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.proj = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if projection else None
        if self.proj is None and (cin != cout or stride != 1):
            raise ValueError(f"an identity shortcut needs cin == cout and stride 1: {cin}→{cout}")

    def forward(self, x: Tensor) -> Tensor:
        a = torch.relu(self.bn1(x))
        shortcut = x if self.proj is None else self.proj(a)
        h = self.conv1(a)
        h = self.conv2(torch.relu(self.bn2(h)))
        return h + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32×32 images (module doc).

    Args:
        units: residual units per stage (ResNet-32: ``(5, 5, 5)``; depth ``2·Σunits + 2``).
        widths: filters per stage (official: ``(32, 64, 128)``).
        init_filters, init_kernel: the init conv (official: 16 filters, 7×7).
        num_classes, in_channels: logits and input channels.
    """

    def __init__(
        self,
        units: Sequence[int] = (5, 5, 5),
        widths: Sequence[int] = (32, 64, 128),
        *,
        init_filters: int = 16,
        init_kernel: int = 7,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        units, widths = tuple(int(u) for u in units), tuple(int(w) for w in widths)
        if not units or len(units) != len(widths) or min(units + widths) < 1:
            raise ValueError(
                f"units and widths must be equally long and positive, got {units}, {widths}"
            )
        if init_filters < 1 or init_kernel < 1 or init_kernel % 2 == 0 or num_classes < 1:
            raise ValueError(
                f"init_filters and num_classes must be ≥ 1 and init_kernel odd, got "
                f"{init_filters}, {init_kernel}, {num_classes}"
            )
        self.units, self.widths = units, widths
        self.init_filters, self.init_kernel = int(init_filters), int(init_kernel)
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.init_conv = nn.Conv2d(
            in_channels, init_filters, init_kernel, padding=init_kernel // 2, bias=False
        )
        blocks: list[nn.Module] = []
        cin = init_filters
        for s, (n, w) in enumerate(zip(units, widths, strict=True)):
            for u in range(n):
                stride = (1 if s == 0 else 2) if u == 0 else 1
                blocks.append(PreActUnit(cin, w, stride, projection=u == 0))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.logits = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def arch(self) -> dict:
        """Constructor arguments (stored with checkpoints)."""
        return {
            "units": list(self.units),
            "widths": list(self.widths),
            "init_filters": self.init_filters,
            "init_kernel": self.init_kernel,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
        }

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:  # flat CHW rows, as td_analysis.data returns them
            side = int(round((x.shape[1] / self.in_channels) ** 0.5))
            x = x.reshape(x.shape[0], self.in_channels, side, side)
        h = self.blocks(self.init_conv(x))
        h = torch.relu(self.bn(h)).mean(dim=(2, 3))
        return self.logits(h)


def resnet32(num_classes: int = 10) -> PreActResNet:
    """The official ResNet-32: 7×7/16 init conv, 3 stages × 5 units of 32/64/128 filters."""
    return PreActResNet((5, 5, 5), (32, 64, 128), num_classes=num_classes)


def layer_count(units: Sequence[int]) -> int:
    """Linear/Conv modules of a :class:`PreActResNet`: init conv, 2 per unit, 1 projection per
    stage, logits."""
    return 1 + 2 * sum(units) + len(units) + 1


def targeted_layers(units: Sequence[int]) -> list[int]:
    """Indices (``layer_modules`` order) of the convs targeted and pruned: all but the init conv
    (index 0) and the logits (the last)."""
    return list(range(1, layer_count(units) - 1))
