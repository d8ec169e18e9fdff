"""The objective of each training phase, one small class per phase (`method.md` §4–5).

=========  =====================  ==============================================================
phase      network input          objective per batch
=========  =====================  ==============================================================
teacher    depth (1 channel)      L_REG, Eq. (1)
student    RGB (3 channels)       L_REG, Eq. (1)
distill    RGB; frozen teacher    G = L_REG + L_ACT + λ·L_ATT, Eqs. (1–4, 8); with
           on paired depth        ``prior.learn`` φ is meta-learned alongside (Algorithm 1 / 3)
target     RGB                    F = L_REG + R(θ): learned prior Σφθ² (Eq. 9–10, Algorithm 2),
                                  Σφ|θ|, σΣ|θ|, σΣθ² or nothing (Table 2)
=========  =====================  ==============================================================

Each phase offers ``loss(batch) -> (scalar, {name: value})``, the forward pass only; the
trainer checks that the loss is finite before any parameter changes, then calls
``update(batch, loss)``, which runs backward and the optimiser step(s).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from training import distributed, losses, regularizers
from training.checkpoint import load_checkpoint, load_model_weights, unwrap
from training.config import TrainConfig
from training.prior import check_prior_fits, init_phi, initialisation_seed, load_prior


def build_network(info: Mapping[str, Any]) -> torch.nn.Module:
    """A network from a checkpoint's ``model_info`` (arch, in_channels, width)."""
    from models import build_model

    return build_model(info["arch"], in_channels=int(info["in_channels"]), width=int(info["width"]),
                       num_outputs=int(info.get("num_outputs", 63)))


def input_key(modality: str) -> str:
    return "depth_input" if modality == "depth" else "rgb_input"


class Phase:
    """Base: plain regression of the normalised joints from the phase's input (teacher, student)."""

    #: batch keys this phase reads (checked on the first sample of every training directory)
    needs: tuple[str, ...] = ("target",)
    #: state beyond model and optimiser that checkpoints hold: the learned prior φ (and an optimiser of φ)
    phi: dict[str, torch.Tensor] | None = None
    phi_optimizer: torch.optim.Optimizer | None = None

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 ctx: distributed.DistContext, memory_format: torch.memory_format, autocast: dict):
        self.cfg, self.model, self.optimizer, self.ctx = cfg, model, optimizer, ctx
        self.device, self.memory_format, self.autocast = ctx.device, memory_format, autocast
        self.input = input_key(cfg.modality)
        self.needs = self.needs + (self.input,)

    def _to(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.contiguous(memory_format=self.memory_format) if tensor.dim() == 4 else tensor

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict:
        with torch.autocast(**self.autocast):
            return self.model(self._to(batch[self.input]))

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.forward(batch)
        l_reg = losses.regression_loss(out["pred"].float(), self._to(batch["target"]))
        return l_reg, {"loss/reg": l_reg.item()}

    def update(self, batch: Mapping[str, torch.Tensor], loss: torch.Tensor) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {}


class DistillPhase(Phase):
    """Cross-modal distillation from a frozen depth teacher; with ``prior.learn`` φ is meta-learned.

    Without a prior: G of Eq. (8) by one student forward and ``backward``. With a prior the
    :class:`training.meta.MetaPriorLearner` computes ``∇_θ G(θ_k)`` and ``∇_φ G(θ̈_l)``
    (Algorithm 1 ``exact`` or Algorithm 3 ``efficient``) without side effects; ``update``
    then averages both over processes (they bypass DDP's hooks), sets φ ← φ − β∇_φ G (plain
    SGD, stateless) and lets the optimiser take the θ step. Under DDP each process takes its
    virtual step with its own share of the batch, so θ matches a single-process run exactly
    but φ only to first order in α (``tests/test_ddp.py``). The meta path runs in float32
    (no autocast): the exact algorithm differentiates through a gradient step.
    """

    needs = ("target", "depth_input")

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast)
        state = load_checkpoint(cfg.distill.teacher)
        if state["model_info"].get("modality") != "depth":
            raise ValueError(f"{cfg.distill.teacher}: distill.teacher should be a depth teacher checkpoint, "
                             f"found a {state['model_info'].get('modality')!r} network")
        self.teacher = build_network(state["model_info"])
        load_model_weights(self.teacher, state["model"], cfg.distill.teacher)
        self.teacher.to(device=self.device, memory_format=memory_format).eval().requires_grad_(False)
        self.meta = None
        if cfg.prior.learn:
            from training.meta import MetaPriorLearner

            student = unwrap(model)
            self.phi = init_phi(student, cfg.prior.init)
            self.meta = MetaPriorLearner(
                student, self.teacher, self.phi, alpha=cfg.prior.alpha or cfg.optim.lr, beta=cfg.prior.beta,
                inner_steps=cfg.prior.inner_steps, algorithm=cfg.prior.algorithm,
                prior=cfg.prior.form, attention_weight=cfg.distill.lambda_att)

    def loss(self, batch):
        rgb, depth, target = (self._to(batch[k]) for k in ("rgb_input", "depth_input", "target"))
        if self.meta is not None:
            # Algorithm 1 steps 1-2 (virtual step, meta-gradient) and ∇_θ G(θ_k), nothing applied yet.
            self._pending = self.meta.meta_gradients(rgb, depth, target)
            values = self._pending[2]
            g = torch.tensor(values["g"])
            scalars = {"loss/G": values["g"], "loss/reg": values["l_reg"], "loss/dist": values["l_dist"]}
            if "g_virtual" in values:  # first_order evaluates no virtual point
                scalars["loss/G_virtual"] = values["g_virtual"]
            return g, scalars
        with torch.autocast(**self.autocast):
            teacher_feats = losses.teacher_features(self.teacher, depth)
            out = self.model(rgb)
        student_feats = {k: v.float() for k, v in out["features"].items()}
        teacher_feats = {k: v.float() for k, v in teacher_feats.items()}
        l_reg = losses.regression_loss(out["pred"].float(), target)
        l_dist = losses.distillation_loss(student_feats, teacher_feats, self.cfg.distill.lambda_att)
        g = l_reg + l_dist  # G, Eq. (8)
        return g, {"loss/G": g.item(), "loss/reg": l_reg.item(), "loss/dist": l_dist.item()}

    def update(self, batch, loss):
        if self.meta is None:
            return super().update(batch, loss)
        theta_grads, phi_grads, _ = self._pending
        self._pending = None
        student = unwrap(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        for name, p in student.named_parameters():
            p.grad = distributed.all_reduce_mean(theta_grads[name].detach().clone(), self.ctx)
        with torch.no_grad():
            for name, value in self.phi.items():
                # Algorithm 1 step 2: φ_{k+1} = φ_k − β ∇_φ G(θ̈_l)
                value.sub_(self.cfg.prior.beta * distributed.all_reduce_mean(phi_grads[name].clone(), self.ctx))
                if self.cfg.prior.nonnegative:
                    value.clamp_(min=0.0)
        self.optimizer.step()  # step 3: θ_{k+1} from ∇_θ G(θ_k)
        flat = torch.cat([p.flatten() for p in self.phi.values()])
        return {"phi/mean": flat.mean().item(), "phi/abs_max": flat.abs().max().item()}


class TargetPhase(Phase):
    """A fresh RGB student on a target set: F = L_REG + regulariser (Algorithm 2, Table 2 baselines)."""

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast)
        self.fixed_phi = None
        if cfg.regularizer.kind.startswith("prior"):  # φ: of this form, learned for this initialisation
            init = load_checkpoint(cfg.model.init)["model_info"] if cfg.model.init else None
            check_prior_fits(cfg.regularizer.prior, cfg.regularizer.kind, initialisation_seed(cfg.seed, init))
            self.fixed_phi = {k: v.requires_grad_(False) for k, v in load_prior(cfg.regularizer.prior, unwrap(model)).items()}

    def regularizer(self) -> torch.Tensor | None:
        params = dict(unwrap(self.model).named_parameters())
        kind, sigma = self.cfg.regularizer.kind, self.cfg.regularizer.sigma
        if kind == "prior":
            return regularizers.weighted_l2_prior(params, self.fixed_phi)
        if kind == "prior_l1":
            return regularizers.weighted_l1_prior(params, self.fixed_phi)
        if kind == "l2":
            return regularizers.l2_penalty(params, sigma)
        if kind == "l1":
            return regularizers.l1_penalty(params, sigma)
        return None

    def loss(self, batch):
        l_reg, scalars = super().loss(batch)
        reg = self.regularizer()
        if reg is None:
            return l_reg, scalars
        total = l_reg + reg
        scalars.update({"loss/F": total.item(), "loss/regularizer": reg.item()})
        return total, scalars


PHASE_CLASSES = {"teacher": Phase, "student": Phase, "distill": DistillPhase, "target": TargetPhase}
