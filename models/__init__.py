"""Networks: a compact ResNet family for teacher (depth) and student (RGB), built by name."""
from models.resnet import DEPTHS, STAGES, CheckpointError, ResNet, ResNetSpec

__all__ = ["build_model", "build_from_info", "known_models", "NETWORK_FAMILIES", "ResNet", "ResNetSpec",
           "CheckpointError", "STAGES"]


def known_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(DEPTHS)


def build_model(name: str, in_channels: int, width: int = 64, num_outputs: int = 63) -> ResNet:
    """Build ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.

    ``in_channels`` is 3 for an RGB student, 1 for a depth teacher; ``width`` is the base
    channel count (64 as in the paper, small values such as 8 for tests);
    ``num_outputs`` is 63 = 21 joints x 3. Example::

        student = build_model("resnet18", in_channels=3)
        out = student(torch.zeros(2, 3, 256, 256))   # out["pred"]: (2, 63)
    """
    if name not in DEPTHS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(known_models())}")
    return ResNet(ResNetSpec(name=name, in_channels=in_channels, width=width, num_outputs=num_outputs))


def _resnet_from_info(info) -> ResNet:
    return build_model(info["arch"], in_channels=int(info["in_channels"]), width=int(info["width"]),
                       num_outputs=int(info.get("num_outputs", 63)))


#: ``model_info["family"]`` → module path and function building that network from the info alone.
#: Every network a phase evaluates is built here, so ``tools/evaluate.py`` rebuilds it from a checkpoint.
NETWORK_FAMILIES = {
    "resnet": ("models", "_resnet_from_info"),
    "lsps": ("models.vae_gan", "from_info"),
    "supervision_transfer": ("models.transfer_network", "network_from_info"),
    "hourglass": ("models.hourglass", "from_info"),
}


def build_from_info(info):
    """The network described by a checkpoint's ``model_info`` (``family`` defaults to ``resnet``)."""
    import importlib

    family = info.get("family", "resnet")
    if family not in NETWORK_FAMILIES:
        raise ValueError(f"unknown network family {family!r}; known: {', '.join(NETWORK_FAMILIES)}")
    module, function = NETWORK_FAMILIES[family]
    return getattr(importlib.import_module(module), function)(info)
