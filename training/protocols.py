"""Which PCK/AUC threshold range an evaluation uses: from the dataset unless overridden.

The published protocols differ by dataset (`datasets.md` §6.2): STB's AUC is over 20–50 mm,
RHD's (and this toolkit's default for every other source: FreiHAND, synthetic shards) over
0–50 mm (:data:`training.metrics.PCK_RANGES`). The dataset is the shard directory's
``source`` (manifest or shard attribute, :func:`datasets.splits.directory_identity`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from datasets.splits import directory_identity
from training.metrics import PCK_RANGES

#: Source → protocol of :data:`PCK_RANGES`; sources not listed use ``"rhd"`` (0–50 mm).
SOURCE_PROTOCOLS = {"stb": "stb", "rhd": "rhd"}


def _fmt(value: float) -> str:
    return f"{value:g}"


def choose_pck_range(directories: Sequence[str | Path], protocol: str = "auto", t_min: float | None = None,
                     t_max: float | None = None) -> dict:
    """``{"protocol", "pck_range_mm": [t_min, t_max], "reason"}`` for evaluating ``directories``.

    ``protocol="auto"`` picks the range of the data's source (all directories must agree);
    ``"rhd"`` / ``"stb"`` force one; ``t_min`` / ``t_max`` override single bounds.
    Raises ``ValueError`` for an unknown protocol or directories of different protocols.
    """
    if t_min is not None and t_max is not None:
        return {"protocol": "custom", "pck_range_mm": [float(t_min), float(t_max)],
                "reason": f"thresholds given explicitly ({_fmt(t_min)}-{_fmt(t_max)} mm)"}
    if protocol == "auto":
        sources = {str(d): directory_identity(d)["source"] for d in directories}
        chosen = {SOURCE_PROTOCOLS.get(str(s), "rhd") for s in sources.values()}
        if len(chosen) > 1:
            listed = ", ".join(f"{d} ({s})" for d, s in sources.items())
            raise ValueError(f"the evaluation data mixes datasets of different AUC ranges ({listed}); "
                             f"choose one protocol explicitly (rhd 0-50 mm or stb 20-50 mm)")
        protocol = chosen.pop() if chosen else "rhd"
        low, high = PCK_RANGES[protocol]
        names = ", ".join(sorted({str(s) for s in sources.values()}))
        reason = f"from the dataset: source {names} uses the {protocol} protocol ({_fmt(low)}-{_fmt(high)} mm)"
    elif protocol in PCK_RANGES:
        low, high = PCK_RANGES[protocol]
        reason = f"protocol {protocol} requested ({_fmt(low)}-{_fmt(high)} mm)"
    else:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose auto, {', '.join(sorted(PCK_RANGES))}")
    if t_min is not None or t_max is not None:
        low = low if t_min is None else float(t_min)
        high = high if t_max is None else float(t_max)
        protocol, reason = "custom", f"thresholds given explicitly ({_fmt(low)}-{_fmt(high)} mm); {reason}"
    return {"protocol": protocol, "pck_range_mm": [low, high], "reason": reason}


__all__ = ["choose_pck_range", "SOURCE_PROTOCOLS"]
