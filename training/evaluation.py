"""Evaluate a trained network on shard directories: metrics.json, a PCK plot, a skeleton grid.

Protocol (`method.md` §7, `datasets.md` §6.3): the network predicts the normalised
target ``ŷ``; the prediction is de-normalised with the ground-truth root and scale,
``J = ŷ·scale_gt + root_gt``, and compared with the ground-truth joints in millimetres
(:mod:`training.metrics`). The skeleton grid projects predicted and true joints into the
evaluated (cropped) image with its intrinsics.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from common.progress import Progress
from datasets.atomic import atomic_write, write_text_atomic
from datasets.errors import DatasetError
from datasets.geometry import project
from datasets.joints import BONE_INDICES
from training.checkpoint import load_checkpoint, load_model_weights
from training.data import describe_samples, evaluation_loader, sample_sources, verify_shard_checksums
from training.metrics import compute_metrics, denormalize, joint_errors, procrustes_align
from training.phases import build_network, input_key
from training.protocols import choose_pck_range


class NonFiniteValueError(DatasetError):
    """A label or a prediction of the evaluation is NaN or infinite (the message names the samples)."""


def check_finite(values: Mapping[str, np.ndarray], what: str, dataset, first: int) -> None:
    """Raise :class:`NonFiniteValueError` naming the shard and sample of every non-finite entry of ``values``
    (rows of the batch whose first item is dataset index ``first``).

    Non-finite values are never averaged into the metrics (they would make every metric NaN
    and ``metrics.json`` invalid JSON); the evaluation stops instead, naming where they are.
    """
    for name, value in values.items():
        bad = ~np.isfinite(np.asarray(value, np.float64).reshape(len(value), -1)).all(axis=1)
        if bad.any():
            where = describe_samples(*sample_sources(dataset, (first + np.flatnonzero(bad)).tolist()))
            raise NonFiniteValueError(f"{where}: {what} '{name}' is NaN or infinite; expected finite values "
                                      f"({int(bad.sum())} sample(s) of this batch)")


@torch.no_grad()
def predict(model: torch.nn.Module, loader, modality: str, device: torch.device,
            progress: bool = True) -> dict[str, np.ndarray]:
    """Run ``model`` over ``loader``; joints in metres, de-normalised with the ground-truth root and scale.

    Raises :class:`NonFiniteValueError` at the first NaN/inf label or prediction, naming its shard and sample.
    """
    model.eval().to(device)
    key = input_key(modality)
    out: dict[str, list] = {"pred": [], "gt": [], "visible": [], "K": [], "index": [], "rgb": []}
    bar = Progress(len(loader), "evaluate", unit="batch", enabled=progress)
    first = 0  # dataset index of the batch's first sample (the loader keeps the dataset's order)
    for batch in loader:
        if key not in batch:
            raise ValueError(f"the evaluation data has no '{key}' (the network reads {modality}); "
                             f"found keys {sorted(batch)}")
        labels = {k: batch[k].cpu().numpy() for k in ("joints3d", "root", "scale")}
        check_finite(labels, "the label", loader.dataset, first)
        # networks predicting in another form (2.5D) take the ground truth the protocol allows (root, scale, K)
        context = {k: batch[k].to(device) for k in getattr(model, "context_keys", ())}
        normalized = model(batch[key].to(device), **context)["pred"].float().cpu().numpy().reshape(-1, 21, 3)
        check_finite({"pred": normalized}, "the network's prediction", loader.dataset, first)
        first += len(normalized)
        bar.update(1)
        out["pred"].append(denormalize(normalized, batch["root"].numpy(), batch["scale"].numpy()))
        out["gt"].append(batch["joints3d"].numpy().astype(np.float64))
        out["visible"].append(batch["visible"].numpy())
        out["K"].append(batch["K"].numpy())
        out["index"].append(batch["index"].numpy())
        if sum(len(r) for r in out["rgb"]) < 16:  # keep a few images for the grid only
            out["rgb"].append(batch["rgb"].numpy())
    bar.close()
    if not out["pred"]:
        raise ValueError("the evaluation data is empty")
    return {k: np.concatenate(v) for k, v in out.items()}


def plot_pck(curves: Mapping[str, Mapping], path: str | Path, title: str = "3D PCK") -> Path:
    """One PCK curve per entry of ``curves`` (label → metrics dict of :meth:`PoseMetrics.to_dict`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, metrics in curves.items():
        ax.plot(metrics["pck_thresholds_mm"], metrics["pck"], marker=".",
                label=f"{label} (AUC {metrics['auc']:.3f}, EPE {metrics['epe_mean_mm']:.1f} mm)")
    ax.set_xlabel("error threshold (mm)")
    ax.set_ylabel("fraction of joints within threshold")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_predictions(predictions: Mapping[str, np.ndarray], path: str | Path, count: int = 8) -> Path:
    """Grid of images with the true skeleton (green) and the predicted one (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, len(predictions["rgb"]))
    columns = min(4, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows), dpi=100, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(np.clip(predictions["rgb"][i].transpose(1, 2, 0), 0, 1))
        for joints, colour in ((predictions["gt"][i], "lime"), (predictions["pred"][i], "red")):
            uv = project(joints, predictions["K"][i])
            for a, b in BONE_INDICES:
                ax.plot(uv[[a, b], 0], uv[[a, b], 1], color=colour, linewidth=1)
        error = np.linalg.norm(predictions["pred"][i] - predictions["gt"][i], axis=-1).mean() * 1000
        ax.set_title(f"#{int(predictions['index'][i])}: {error:.1f} mm", fontsize=7)
    fig.suptitle("true (green) vs predicted (red)", fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


def _save_figure(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_write(path) as temporary:
        fig.savefig(temporary, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def evaluate_model(model: torch.nn.Module, info: Mapping, data: Sequence[str | Path], out_dir: str | Path, *,
                   device: torch.device | str = "cpu", image_size: int | None = None, t_min: float | None = None,
                   t_max: float | None = None, protocol: str = "auto", steps: int = 20, batch_size: int = 32, visible_only: bool = False,
                   workers: int = 0, label: str = "model", verify: bool = True, progress: bool = True) -> dict:
    """Evaluate and write ``metrics.json``, ``pck.png`` and ``predictions.png`` into ``out_dir``.

    ``verify`` checks every shard against its manifest SHA-256 first (the trainer, which
    checked them at the start of the run, passes ``False``).
    """
    out_dir = Path(out_dir)
    # AUC range: from the data's source (STB 20-50 mm, others 0-50 mm) unless protocol / t_min / t_max say otherwise
    pck = choose_pck_range(data, protocol, t_min, t_max)
    (t_min, t_max), protocol = pck["pck_range_mm"], pck["protocol"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if verify:
        verify_shard_checksums(data)
    size = int(image_size or info.get("image_size", 256))
    loader = evaluation_loader(data, image_size=size, batch_size=batch_size, workers=workers)
    predictions = predict(model, loader, info["modality"], torch.device(device), progress=progress)
    errors_mm = joint_errors(predictions["pred"], predictions["gt"]) * 1000.0
    visible = predictions["visible"] if visible_only else None
    metrics = compute_metrics(errors_mm, visible, t_min=t_min, t_max=t_max, steps=steps).to_dict()
    # Procrustes-aligned errors (similarity transform per sample, as FreiHAND's official evaluation)
    aligned_mm = joint_errors(procrustes_align(predictions["pred"], predictions["gt"]), predictions["gt"]) * 1000.0
    aligned = compute_metrics(aligned_mm, visible, t_min=t_min, t_max=t_max, steps=steps)
    metrics.update({"pa_epe_mean_mm": aligned.epe_mean, "pa_epe_median_mm": aligned.epe_median, "pa_auc": aligned.auc})
    metrics.update({"data": [str(d) for d in data], "image_size": size, "visible_only": visible_only,
                    "pck_protocol": protocol, "pck_range_reason": pck["reason"],
                    "protocol": "prediction de-normalised with the ground-truth root (wrist) and scale "
                                "(middle MCP-PIP bone); errors in mm",
                    "model": {k: v for k, v in info.items() if k != "input_normalization"}})
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    plot_pck({label: metrics}, out_dir / "pck.png")
    plot_predictions(predictions, out_dir / "predictions.png")
    return metrics


def evaluate_checkpoint(checkpoint: str | Path, data: Sequence[str | Path], out_dir: str | Path, **options) -> dict:
    """Rebuild the network described by a checkpoint and :func:`evaluate_model` it."""
    state = load_checkpoint(checkpoint)
    model = build_network(state["model_info"])
    load_model_weights(model, state["model"], checkpoint)
    return evaluate_model(model, state["model_info"], data, out_dir, **options)
