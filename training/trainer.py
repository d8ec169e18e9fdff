"""One training run of any phase, as a plain loop with numbered steps.

``train(cfg)`` is what ``tools/train.py`` calls (once per process under ``torchrun``):

1. processes, device and seeds;
2. data (one or several shard directories, :mod:`training.data`; the second domain
   ``data.adapt`` of adaptation phases, :mod:`training.adapt`);
3. run directory with the resolved ``config.yaml``;
4. the network, initialised from ``model.init`` when given, DDP-wrapped when distributed;
5. optimiser, scheduler and the phase objective (:mod:`training.phases`; other methods'
   phases come from :func:`training.methods.phase_class` and keep their further networks
   and optimisers, which checkpoints hold);
6. resume from ``<out>/checkpoints/last.pt`` when it exists;
7. the loop: loss → finite check → update → log → checkpoint;
8. final checkpoint ``<out>/model.pt``, the learned prior ``<out>/prior.pt`` (distill
   with ``prior.learn``) and, when ``data.val`` is set, an evaluation in ``<out>/eval``.

Interruptions lose at most ``checkpoint_every`` steps; a resumed run continues with the
same data order, augmentation and RNG state and ends with the same weights. A non-finite
loss stops every process with :class:`NonFiniteLossError` before any parameter changes,
leaving the last good checkpoint in place.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.progress import Progress
from datasets.errors import DatasetError
from datasets.transforms import input_normalization_config
from training import distributed
from training.checkpoint import load_checkpoint, restore_training_state, save_checkpoint, unwrap
from training.config import TrainConfig, save_config
from training.data import (describe_samples, require_keys, sample_sources, set_transform_epoch, training_loader,
                           verify_shard_checksums)
from training.logging import RunLogger
from training.adapt import AdaptStream
from training.methods import phase_class
from training.phases import build_network
from training.prior import initialisation_seed, save_prior
from training.protocols import choose_pck_range
from training.run_directory import prepare_run_directory


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


@dataclass
class RunResult:
    run_dir: Path
    checkpoint: Path
    steps: int
    final_loss: float
    prior: Path | None = None
    metrics: dict | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(schedule: str, total_steps: int):
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    return lambda step: 1.0


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def train(cfg: TrainConfig) -> RunResult:
    """Run one phase to completion (or resume it); returns where its outputs are."""
    # Step 1: processes, device, seeds. Every process gets the same seed: the initial weights
    # must agree (DDP also broadcasts them) and the data order is split by the sampler.
    ctx = distributed.setup(cfg.device)
    seed_everything(cfg.seed)
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    on_cuda = ctx.device.type == "cuda"
    autocast = {"device_type": ctx.device.type, "dtype": torch.bfloat16, "enabled": cfg.amp and on_cuda}
    memory_format = torch.channels_last if (cfg.channels_last and on_cuda) else torch.contiguous_format
    try:
        # Step 2: data (first, so that a wrong path fails before anything is written).
        # optim.batch_size is the global batch; each process takes its share.
        if cfg.optim.batch_size % ctx.world_size:
            raise ValueError(f"optim.batch_size={cfg.optim.batch_size} is not divisible by the "
                             f"{ctx.world_size} processes")
        phase_cls = phase_class(cfg.phase)
        loader, sampler = training_loader(
            cfg.data.train, image_size=cfg.data.image_size, augment=cfg.data.augment,
            batch_size=cfg.optim.batch_size // ctx.world_size, seed=cfg.seed, workers=cfg.data.workers,
            rank=ctx.rank, world_size=ctx.world_size, pin_memory=on_cuda, allow_eval_split=cfg.data.allow_eval_split,
            fraction=cfg.data.train_fraction, subset_seed=cfg.data.subset_seed)
        # the second domain of adaptation phases (training.adapt), its labels hidden but for adapt_keys
        adapt = (AdaptStream(cfg, phase_cls, batch_size=cfg.optim.batch_size // ctx.world_size, rank=ctx.rank,
                             world_size=ctx.world_size, pin_memory=on_cuda) if phase_cls.uses_adapt else None)
        if cfg.data.val:  # the validation's AUC range comes from the data's source: fail now, not after training
            choose_pck_range(cfg.data.val, cfg.data.val_protocol)
        per_epoch = sampler.batches_per_epoch
        # Every shard against its manifest SHA-256, once, on rank 0 (the others wait for its verdict).
        damaged = None
        if ctx.is_main:
            try:
                verify_shard_checksums(list(cfg.data.train) + list(cfg.data.adapt) + list(cfg.data.val or []))
            except DatasetError as exc:
                damaged = exc
        if distributed.any_true(damaged is not None, ctx):
            raise damaged or DatasetError("rank 0 found a shard that does not match its manifest checksum")
        total_steps = cfg.optim.epochs * per_epoch
        if cfg.optim.max_steps:
            total_steps = min(total_steps, cfg.optim.max_steps)

        # Step 3: run directory and the resolved config (one config per run directory:
        # training.run_directory refuses another one unless overwrite=true).
        run_dir = Path(cfg.out)
        last = run_dir / "checkpoints" / "last.pt"
        prepare_run_directory(cfg, is_main=ctx.is_main)
        distributed.barrier(ctx)
        if ctx.is_main:
            save_config(cfg, run_dir, extra={"input_normalization": input_normalization_config(),
                                             "world_size": ctx.world_size})
        distributed.barrier(ctx)

        # Step 4: the network. init_seed: the seed that drew its initial weights (this run's seed, or
        # the one recorded in the model.init checkpoint), recorded in checkpoints and in prior.pt.
        init = load_checkpoint(cfg.model.init) if cfg.model.init else None
        info = dict(phase_cls.model_info(cfg), input_normalization=input_normalization_config(),
                    init_seed=initialisation_seed(cfg.seed, init and init["model_info"]))
        model = build_network(info)
        if init is not None:
            phase_cls.initialise(cfg, model, init, cfg.model.init)
        model.to(device=ctx.device, memory_format=memory_format)
        model = distributed.wrap_model(model, ctx, sync_bn=cfg.model.sync_bn and not cfg.model.freeze_bn)

        # Step 5: optimiser, scheduler, phase objective (with the phase's further networks and optimisers).
        params = phase_cls.trainable_parameters(cfg, model)
        if cfg.optim.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=0.9, weight_decay=cfg.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.optim.schedule, total_steps))
        phase = phase_cls(cfg, model, optimizer, ctx, memory_format, autocast, total_steps=total_steps)
        require_keys(loader.dataset, phase.needs, cfg.data.train, f"phase {cfg.phase}")

        # Step 6: resume.
        step = 0
        logger = RunLogger(run_dir, enabled=ctx.is_main)
        if cfg.resume and last.exists():
            state = load_checkpoint(last, map_location=ctx.device)
            _, step = restore_training_state(state, last, model=model, optimizer=optimizer, scheduler=scheduler,
                                             phi=phase.phi, phi_optimizer=phase.phi_optimizer)
            phase.load_state_dict(state.get("extra") or {}, str(last))
            logger.truncate_after(step)
        elif ctx.is_main:
            logger.truncate_after(-1)

        def checkpoint(path: Path, epoch: int) -> None:
            if ctx.is_main:
                save_checkpoint(path, model=model, model_info=info, epoch=epoch, step=step, optimizer=optimizer,
                                scheduler=scheduler, phi=phase.phi, phi_optimizer=phase.phi_optimizer,
                                extra=phase.state_dict())
            distributed.barrier(ctx)

        # Step 7: the loop.
        progress = Progress(total_steps, f"{cfg.phase}", unit="step", initial=step,
                            enabled=cfg.progress and ctx.is_main)
        final_loss = float("nan")
        adapt_batches = adapt.batches(step) if adapt is not None else None
        while step < total_steps:
            epoch, offset = divmod(step, per_epoch)
            sampler.set_epoch(epoch, start_batch=offset)
            set_transform_epoch(loader.dataset, epoch)
            phase.train_mode()
            if cfg.model.freeze_bn:
                _freeze_batchnorm(model)
            for batch in loader:
                if adapt_batches is not None:
                    batch["adapt"] = next(adapt_batches)
                # 7a: forward; the loss must be finite on every process before anything changes.
                loss, scalars = phase.loss(batch)
                if distributed.any_true(not torch.isfinite(loss).item(), ctx):
                    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
                    where = describe_samples(*sample_sources(loader.dataset,
                                                             sampler.batch_indices(step - epoch * per_epoch)))
                    share = " (this process's share of the global batch)" if ctx.distributed else ""
                    raise NonFiniteLossError(
                        f"phase {cfg.phase}: the loss became non-finite ({loss.item()}) at epoch {epoch}, "
                        f"step {step}, on the batch of {where}{share}; stopping without updating the weights; "
                        f"{kept}. Try a lower optim.lr or check those samples.")
                # 7b: backward and update (θ, and φ when it is meta-learned).
                scalars.update(phase.update(batch, loss))
                scheduler.step()
                step += 1
                final_loss = float(loss.item())
                progress.update(1)
                progress.set_postfix(loss=f"{final_loss:.4g}", epoch=epoch)
                # 7c: log and checkpoint.
                if step % cfg.log_every == 0 or step == total_steps:
                    scalars["lr"] = scheduler.get_last_lr()[0]
                    logger.log(step, epoch, scalars)
                if step % cfg.checkpoint_every == 0 or step % per_epoch == 0 or step == total_steps:
                    checkpoint(last, step // per_epoch)
                if step >= total_steps:
                    break
        progress.close()

        # Step 8: outputs.
        final = run_dir / "model.pt"
        checkpoint(final, step // per_epoch)
        prior_path = None
        if phase.phi is not None:
            prior_path = run_dir / "prior.pt"
            if ctx.is_main:
                save_prior(prior_path, phase.phi, unwrap(model).arch, form=cfg.prior.form, init_seed=info["init_seed"])
        metrics = None
        if cfg.data.val and ctx.is_main:
            from training.evaluation import evaluate_model

            metrics = evaluate_model(unwrap(model), info, cfg.data.val, run_dir / "eval", device=ctx.device,
                                     protocol=cfg.data.val_protocol,
                                     image_size=cfg.data.image_size, verify=False, progress=cfg.progress)
        logger.close()
        distributed.barrier(ctx)
        return RunResult(run_dir=run_dir, checkpoint=final, steps=step, final_loss=final_loss, prior=prior_path,
                         metrics=metrics)
    finally:
        torch.set_num_threads(threads_before)
        distributed.cleanup(ctx)


__all__ = ["train", "RunResult", "NonFiniteLossError"]
