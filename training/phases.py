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

:class:`Phase` is also the contract of every other method (:mod:`training.methods`): the
trainer builds the phase's *evaluated network* from :meth:`Phase.model_info` (saved as
``model.pt`` and rebuilt by ``tools/evaluate.py``) with its optimiser and schedule; a method
with more networks and optimisers (a critic, VAE-GAN parts, a frozen teacher) keeps them in
``self.networks`` / ``self.optimizers``, which checkpoints hold and resume restores
(:meth:`Phase.state_dict`). A phase with ``uses_adapt`` also gets a batch of ``data.adapt``
under ``batch["adapt"]`` each step, with only its ``adapt_keys`` (:mod:`training.adapt`).
A phase that draws random numbers itself (interpolates of a gradient penalty, VAE noise) draws
them from :meth:`Phase.own_generator`, which checkpoints hold: a resumed run rebuilds its data
loaders, which draw from the global generator, so global draws would differ after a resume.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from training import distributed, losses, regularizers
from training.checkpoint import CheckpointError, load_checkpoint, load_model_weights, unwrap
from training.config import TrainConfig
from training.prior import check_prior_fits, init_phi, initialisation_seed, load_prior


def build_network(info: Mapping[str, Any]) -> torch.nn.Module:
    """A network from a checkpoint's ``model_info``: ``family`` (default ``resnet``: arch, in_channels,
    width, num_outputs) selects the builder of :data:`models.NETWORK_FAMILIES`."""
    from models import build_from_info

    return build_from_info(info)


def input_key(modality: str) -> str:
    return "depth_input" if modality == "depth" else "rgb_input"


class Phase:
    """Base: plain regression of the normalised joints from the phase's input (teacher, student)."""

    #: batch keys this phase reads (checked on the first sample of every training directory)
    needs: tuple[str, ...] = ("target",)
    #: state beyond model and optimiser that checkpoints hold: the learned prior φ (and an optimiser of φ)
    phi: dict[str, torch.Tensor] | None = None
    phi_optimizer: torch.optim.Optimizer | None = None
    #: whether the phase reads a second domain (``data.adapt``), and which of its keys it may see
    uses_adapt: bool = False
    adapt_keys: tuple[str, ...] = ()
    adapt_label_keys: tuple[str, ...] = ()  # only for the labelled fraction data.adapt_label_fraction

    # ----------------------------------------------------------------- hooks the trainer calls before __init__

    @classmethod
    def input_modality(cls, cfg: TrainConfig) -> str:
        """``rgb`` or ``depth``: what the evaluated network reads."""
        return cfg.modality

    @classmethod
    def model_info(cls, cfg: TrainConfig) -> dict:
        """Description of the evaluated network (``build_network`` rebuilds it from this alone)."""
        modality = cls.input_modality(cfg)
        return {"arch": cfg.model.arch, "width": cfg.model.width, "in_channels": 1 if modality == "depth" else 3,
                "num_outputs": 63, "modality": modality, "phase": cfg.phase, "image_size": cfg.data.image_size}

    @classmethod
    def initialise(cls, cfg: TrainConfig, model: torch.nn.Module, init: Mapping[str, Any], source: str) -> None:
        """Load ``model.init``'s weights (all of them, strictly; methods may load a part)."""
        load_model_weights(model, init["model"], source)

    @classmethod
    def trainable_parameters(cls, cfg: TrainConfig, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Parameters of the evaluated network that its optimiser updates (methods may freeze some)."""
        return [p for p in model.parameters() if p.requires_grad]

    # ----------------------------------------------------------------- the phase

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 ctx: distributed.DistContext, memory_format: torch.memory_format, autocast: dict,
                 total_steps: int = 0):
        self.cfg, self.model, self.optimizer, self.ctx = cfg, model, optimizer, ctx
        self.device, self.memory_format, self.autocast = ctx.device, memory_format, autocast
        self.total_steps = int(total_steps)  # optimiser steps of the whole run (for schedules of φ)
        self.terms = losses.LossTerms.from_config(cfg)  # L_REG reduction, L_DIST weights (the run's loss scales)
        self.input = input_key(self.input_modality(cfg))
        self.needs = self.needs + (self.input,)
        #: further networks (trained or frozen) and optimisers of the method: checkpointed by name
        self.networks: dict[str, torch.nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        #: networks of ``self.networks`` that are frozen (kept in eval mode by :meth:`train_mode`)
        self.frozen: set[str] = set()
        #: the phase's own random generators (:meth:`own_generator`): checkpointed by name
        self.generators: dict[str, torch.Generator] = {}

    def own_generator(self, name: str, offset: int) -> torch.Generator:
        """A CPU generator seeded ``seed + offset`` for the phase's own draws, held in checkpoints
        (a resume re-creates the data loaders, which draw from the global generator)."""
        self.generators[name] = torch.Generator().manual_seed(int(self.cfg.seed) + int(offset))
        return self.generators[name]

    def train_mode(self) -> None:
        """Put every trained network in training mode, frozen ones in eval mode (once per epoch)."""
        self.model.train()
        for name, network in self.networks.items():
            network.train(name not in self.frozen)

    def state_dict(self) -> dict[str, Any]:
        """What checkpoints hold beyond the evaluated network: ``self.networks`` and ``self.optimizers``."""
        return {"networks": {n: unwrap(m).state_dict() for n, m in self.networks.items() if n not in self.frozen},
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "generators": {n: g.get_state() for n, g in self.generators.items()}}

    def load_state_dict(self, state: Mapping[str, Any], source: str) -> None:
        """Inverse of :meth:`state_dict` (on resume); a checkpoint of another method is refused by name."""
        networks, optimizers = state.get("networks", {}), state.get("optimizers", {})
        for name, network in self.networks.items():
            if name in self.frozen:
                continue
            if name not in networks:
                raise CheckpointError(f"{source}: the checkpoint holds no network '{name}' of phase {self.cfg.phase}")
            load_model_weights(network, networks[name], f"{source} ({name})")
        for name, optimizer in self.optimizers.items():
            if name not in optimizers:
                raise CheckpointError(f"{source}: the checkpoint holds no optimiser '{name}' of phase {self.cfg.phase}")
            optimizer.load_state_dict(optimizers[name])
        for name, generator in self.generators.items():
            if name not in state.get("generators", {}):
                raise CheckpointError(f"{source}: the checkpoint holds no random generator '{name}' of phase "
                                      f"{self.cfg.phase}")
            generator.set_state(state["generators"][name])

    def current_lr(self) -> float:
        """Learning rate of the optimiser step about to be taken (follows the schedule)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _to(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.contiguous(memory_format=self.memory_format) if tensor.dim() == 4 else tensor

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict:
        with torch.autocast(**self.autocast):
            return self.model(self._to(batch[self.input]))

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.forward(batch)
        l_reg = self.terms.regression(out["pred"].float(), self._to(batch["target"]))
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

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
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
            # α follows the real learning rate under the schedule (prior.alpha sets its ratio to optim.lr).
            self.alpha_ratio = (cfg.prior.alpha / cfg.optim.lr) if cfg.prior.alpha else 1.0
            self.beta = meta_beta(cfg, self.total_steps)
            self.meta = MetaPriorLearner(
                student, self.teacher, self.phi, alpha=self.alpha_ratio * cfg.optim.lr, beta=self.beta,
                inner_steps=cfg.prior.inner_steps, algorithm=cfg.prior.algorithm,
                prior=cfg.prior.form, terms=self.terms)

    def loss(self, batch):
        rgb, depth, target = (self._to(batch[k]) for k in ("rgb_input", "depth_input", "target"))
        if self.meta is not None:
            # Algorithm 1 steps 1-2 (virtual step, meta-gradient) and ∇_θ G(θ_k), nothing applied yet.
            self.meta.alpha = self.alpha_ratio * self.current_lr()
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
        l_reg = self.terms.regression(out["pred"].float(), target)
        l_dist = self.terms.distillation(student_feats, teacher_feats)
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
                value.sub_(self.beta * distributed.all_reduce_mean(phi_grads[name].clone(), self.ctx))
                if self.cfg.prior.nonnegative:
                    value.clamp_(min=0.0)
        self.optimizer.step()  # step 3: θ_{k+1} from ∇_θ G(θ_k)
        flat = torch.cat([p.flatten() for p in self.phi.values()])
        return {"phi/mean": flat.mean().item(), "phi/abs_max": flat.abs().max().item()}


class TargetPhase(Phase):
    """A fresh RGB student on a target set: F = L_REG + regulariser (Algorithm 2, Table 2 baselines).

    Every regulariser is ``Σ_i w_i r(θ_i)`` with ``r = θ²`` or ``|θ|`` and per-weight ``w``: the
    learned φ (``prior``, ``prior_l1``) or σ everywhere (``l2``, ``l1``). ``regularizer.apply``:

    - ``gradient`` (paper-literal): ``Σ w r(θ)`` is added to the loss, so Adam rescales its
      gradient by 1/√v like any other;
    - ``decoupled``: after each optimiser step ``θ ← θ − lr_t·w·r'(θ)`` (:func:`regularizers.decoupled_decay_`,
      ``lr_t`` the step's scheduled learning rate) — Algorithm 3's ``θ(1 − 2αφ)``, the decay φ
      was meta-learned for, applied beside Adam like AdamW's weight decay.
    """

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
        kind, sigma = cfg.regularizer.kind, cfg.regularizer.sigma
        self.form = {"prior": "l2", "prior_l1": "l1", "l2": "l2", "l1": "l1"}.get(kind)
        self.weights: dict[str, torch.Tensor | float] | None = None
        if kind.startswith("prior"):  # φ must be of this form and learned for this student's initialisation
            init = load_checkpoint(cfg.model.init)["model_info"] if cfg.model.init else None
            check_prior_fits(cfg.regularizer.prior, kind, initialisation_seed(cfg.seed, init))
            self.weights = {k: v.requires_grad_(False) for k, v in load_prior(cfg.regularizer.prior, unwrap(model)).items()}
        elif kind in ("l1", "l2"):
            self.weights = {name: sigma for name, _ in unwrap(model).named_parameters()}

    def regularizer(self) -> torch.Tensor | None:
        """``Σ_i w_i r(θ_i)`` (Eq. 10 for the learned ℓ2 prior), or None without a regulariser."""
        if self.weights is None:
            return None
        return regularizers.weighted_penalty(dict(unwrap(self.model).named_parameters()), self.weights, self.form)

    def loss(self, batch):
        l_reg, scalars = super().loss(batch)
        if self.weights is None:
            return l_reg, scalars
        if self.cfg.regularizer.apply == "decoupled":
            with torch.no_grad():
                scalars["loss/regularizer"] = self.regularizer().item()
            return l_reg, scalars
        reg = self.regularizer()
        total = l_reg + reg
        scalars.update({"loss/F": total.item(), "loss/regularizer": reg.item()})
        return total, scalars

    def update(self, batch, loss):
        lr = self.current_lr()
        scalars = super().update(batch, loss)
        if self.weights is not None and self.cfg.regularizer.apply == "decoupled":
            regularizers.decoupled_decay_(dict(unwrap(self.model).named_parameters()), self.weights, self.form, lr)
        return scalars


#: Schedule factor averaged over a run (``optim.schedule``): Σ_t lr_t = lr · factor · N.
MEAN_LR_FACTOR = {"constant": 1.0, "cosine": 0.5}


def meta_beta(cfg: TrainConfig, total_steps: int) -> float:
    """β of the φ update: ``prior.beta``, or with ``prior.beta_rule=paper_product``
    ``β = prior.beta_product / Σ_t α_t`` so that ``Σ_t α_t·β`` — how far φ can move, since
    ∂G/∂φ ∝ α — equals the paper's ``2.5e-4 · 1e-3 · ~285k ≈ 0.071`` on a shorter schedule."""
    if cfg.prior.beta_rule == "fixed" or not cfg.prior.learn:
        return cfg.prior.beta
    alpha = cfg.prior.alpha or cfg.optim.lr
    return cfg.prior.beta_product / (alpha * MEAN_LR_FACTOR[cfg.optim.schedule] * max(1, total_steps))


PHASE_CLASSES = {"teacher": Phase, "student": Phase, "distill": DistillPhase, "target": TargetPhase}
