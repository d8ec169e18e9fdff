"""A compact ResNet (He et al., CVPR 2016) for teacher and student networks (method.md §3).

Teacher (depth, ``in_channels=1``) and student (RGB, ``in_channels=3``) share this
architecture. The stage outputs ``layer1..layer4`` are returned by
:meth:`ResNet.forward_features` so that the distillation losses (main paper Eqs. 2-3) reach
them without hooks; :meth:`ResNet.forward_head` pools ``layer4`` and regresses the
normalised 63-vector ``y = (J - J_root) / scale`` (21 joints x 3).

Module names follow the widely used ImageNet ResNet layout (``conv1``, ``bn1``,
``layer{1..4}.{i}.conv{1,2,3}``, ``...downsample.{0,1}``, ``fc``) so that a user's
torchvision-format checkpoint maps onto it key for key (:meth:`ResNet.load_imagenet_checkpoint`).

Shapes for an input ``(B, C_in, H, W)`` and base width ``w`` (expansion ``e`` = 1 for basic,
4 for bottleneck blocks)::

    layer1: (B, w*e,   H/4,  W/4)      layer3: (B, 4w*e, H/16, W/16)
    layer2: (B, 2w*e,  H/8,  W/8)      layer4: (B, 8w*e, H/32, W/32)
    pred:   (B, num_outputs)
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

STAGES = ("layer1", "layer2", "layer3", "layer4")


class CheckpointError(ValueError):
    """A pretrained checkpoint cannot be read or does not fit the network."""


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    """Projection shortcut (1x1 conv + BN) when the residual changes shape, else identity."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, residual (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + shortcut)


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture description; saved with checkpoints and learned priors."""

    name: str
    in_channels: int
    width: int = 64
    num_outputs: int = 63


# name -> (block, blocks per stage); filled explicitly, read by models.build_model.
DEPTHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet backbone + linear regression head.

    ``forward(x)`` returns ``{"pred": (B, num_outputs), "features": {"layer1": ..., ..., "layer4": ...}}``.
    The layout works with ``channels_last`` tensors (``model.to(memory_format=torch.channels_last)``).
    """

    def __init__(self, spec: ResNetSpec):
        super().__init__()
        if spec.name not in DEPTHS:
            raise ValueError(f"unknown ResNet {spec.name!r}; known: {', '.join(sorted(DEPTHS))}")
        if spec.in_channels < 1 or spec.width < 1 or spec.num_outputs < 1:
            raise ValueError(f"in_channels, width and num_outputs must be positive, got {spec}")
        self.spec = spec
        block, counts = DEPTHS[spec.name]
        w = spec.width
        self.conv1 = nn.Conv2d(spec.in_channels, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        cin = w
        for stage, (count, stride) in enumerate(zip(counts, (1, 2, 2, 2))):
            planes = w * 2**stage
            blocks = []
            for i in range(count):
                blocks.append(block(cin, planes, stride if i == 0 else 1))
                cin = planes * block.expansion
            setattr(self, STAGES[stage], nn.Sequential(*blocks))
        self.num_features = cin
        self.fc = nn.Linear(cin, spec.num_outputs)
        self._init_weights()

    @property
    def arch(self) -> dict:
        """The architecture as a plain dict (name, in_channels, width, num_outputs)."""
        return asdict(self.spec)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage outputs ``layer1..layer4`` (before pooling) for an input ``(B, C_in, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.spec.in_channels:
            raise ValueError(
                f"{self.spec.name} expects input (B, {self.spec.in_channels}, H, W), got {tuple(x.shape)}")
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        features = {}
        for name in STAGES:
            x = getattr(self, name)(x)
            features[name] = x
        return features

    def forward_head(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Global average pool of ``layer4`` then a linear layer: ``(B, num_outputs)``."""
        pooled = features["layer4"].mean(dim=(2, 3))
        return self.fc(pooled)

    def forward(self, x: torch.Tensor) -> dict:
        features = self.forward_features(x)
        return {"pred": self.forward_head(features), "features": features}

    def load_imagenet_checkpoint(self, path: str | os.PathLike) -> None:
        """Load a torchvision-format ImageNet state dict (``conv1.weight``, ``layer1.0.bn1.weight``, ...).

        Every backbone key must be present with the expected shape (strict); the classifier
        ``fc.*`` is skipped because this head regresses joints. For ``in_channels != 3`` the
        first convolution is adapted by averaging the RGB filters and repeating the mean over
        the input channels (scaled by ``3 / in_channels`` so that the response to a constant
        image is preserved). Raises :class:`CheckpointError` naming the file and the keys.
        """
        path = os.fspath(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: ImageNet checkpoint not found") from None
        except Exception as exc:  # zip, pickle and tensor errors: not a readable checkpoint
            raise CheckpointError(
                f"{path}: expected a torch state dict saved with torch.save, could not read it ({exc})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("fc.")}
        given = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing = sorted(set(own) - set(given))
        unexpected = sorted(set(given) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: keys do not match {self.spec.name} (width {self.spec.width}); "
                f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        conv1 = given["conv1.weight"]
        if self.spec.in_channels != conv1.shape[1] and conv1.dim() == 4:
            mean = conv1.mean(dim=1, keepdim=True) * (conv1.shape[1] / self.spec.in_channels)
            given["conv1.weight"] = mean.repeat(1, self.spec.in_channels, 1, 1)
        for key, value in own.items():
            if tuple(given[key].shape) != tuple(value.shape):
                raise CheckpointError(
                    f"{path}: {key} has shape {tuple(given[key].shape)}, "
                    f"{self.spec.name} (width {self.spec.width}) expects {tuple(value.shape)}")
        self.load_state_dict(given, strict=False)
