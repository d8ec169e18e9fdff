"""The second data stream of domain-adaptation phases: ``data.adapt``, beside ``data.train``.

Methods that learn from two domains at once (Adaptive Wasserstein Hourglass: labelled
synthetic + real with 2D labels; LSPS: synthetic depth with poses + real depth with few
or no labels) read their labelled source from ``data.train`` as every phase does and the
other domain from ``data.adapt``. The trainer hands the phase one batch of each per step,
the adaptation batch under ``batch["adapt"]``.

What the phase may see of the adaptation domain is declared, not trusted:

- ``Phase.adapt_keys``: the batch keys delivered for every sample (e.g. ``rgb_input``,
  ``joints2d``); every other key (``joints3d``, ``target``, ``root``, ``scale`` …) is
  removed before the phase sees the batch;
- ``Phase.adapt_label_keys``: keys delivered only for the labelled fraction
  ``data.adapt_label_fraction`` of the set (:func:`training.data.labelled_subset` with
  ``data.subset_seed``): those rows hold the label, all other rows hold zeros, and a bool
  ``labelled`` (B,) says which rows are real labels. With fraction 0 no label reaches the phase.

The stream cycles the adaptation set (the smaller set is replicated, so both domains are
seen equally often, as the AW Hourglass paper does for STB) with an order that is a pure
function of ``(seed, step)``: a resumed run draws the same adaptation batches.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from training.data import labelled_subset, set_transform_epoch, training_loader

#: Seed offset of the adaptation stream's order and augmentation (differs from data.train's).
ADAPT_SEED_OFFSET = 1_000_003


def hide_labels(batch: dict[str, torch.Tensor], keys: Sequence[str], label_keys: Sequence[str],
                labelled: torch.Tensor) -> dict[str, torch.Tensor]:
    """Keep ``keys`` of ``batch``; keep ``label_keys`` for the rows where ``labelled`` (B,) is true and
    zero them elsewhere; add ``labelled``. Everything else is dropped."""
    missing = [k for k in (*keys, *label_keys) if k not in batch]
    if missing:
        raise ValueError(f"data.adapt: batches have no {missing} (found keys {sorted(batch)})")
    out = {k: batch[k] for k in keys}
    labelled = labelled.to(device=next(iter(batch.values())).device)
    for key in label_keys:
        value = batch[key]
        mask = labelled.view(-1, *([1] * (value.dim() - 1)))
        out[key] = torch.where(mask, value, torch.zeros_like(value))
    out["labelled"] = labelled
    return out


class AdaptStream:
    """Endless batches of ``data.adapt`` for step ``start_step, start_step + 1, …`` (labels hidden).

    Args: cfg: the run's config; phase: the phase class (its ``adapt_keys`` / ``adapt_label_keys``);
    batch_size, rank, world_size, pin_memory: as for ``data.train``.
    """

    def __init__(self, cfg, phase_cls, *, batch_size: int, rank: int = 0, world_size: int = 1,
                 pin_memory: bool = False):
        self.keys, self.label_keys = tuple(phase_cls.adapt_keys), tuple(phase_cls.adapt_label_keys)
        self.loader, self.sampler = training_loader(
            cfg.data.adapt, image_size=cfg.data.image_size, augment=cfg.data.augment, batch_size=batch_size,
            seed=cfg.seed + ADAPT_SEED_OFFSET, workers=cfg.data.workers, rank=rank, world_size=world_size,
            pin_memory=pin_memory, allow_eval_split=cfg.data.allow_eval_split)
        size = len(self.loader.dataset)
        self.labelled = np.zeros(size, dtype=bool)
        self.labelled[labelled_subset(size, cfg.data.adapt_label_fraction, cfg.data.subset_seed)] = True
        self.per_epoch = self.sampler.batches_per_epoch

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def labelled_count(self) -> int:
        return int(self.labelled.sum())

    def batches(self, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
        """The adaptation batch of every step from ``start_step`` on (cycling epochs)."""
        step = int(start_step)
        while True:
            epoch, offset = divmod(step, self.per_epoch)
            self.sampler.set_epoch(epoch, start_batch=offset)
            set_transform_epoch(self.loader.dataset, epoch)
            for k, batch in enumerate(self.loader):
                indices = self.sampler.batch_indices(offset + k)
                yield hide_labels(batch, self.keys, self.label_keys, torch.from_numpy(self.labelled[indices]))
                step += 1


__all__ = ["AdaptStream", "hide_labels"]
