"""Supervision transfer (Gupta, Hoffman & Malik, CVPR 2016, §3–4) under the toolkit's protocol.

A frozen network Φ trained with labels on modality L teaches a network Ψ on a second, paired but
unlabelled modality U to reproduce its mid-level features; Ψ is then fine-tuned with few labels.

=============================  ======================  ===============================================================
phase                          networks / input        objective per batch
=============================  ======================  ===============================================================
supervision_transfer           Ψ on U (random init),   Eq. (2), **no labels**:
                               t_p, frozen Φ on L      L_T = Σ_{p∈P} 1/N_p ‖Φ_p(x_L)/c_p − t_p(Ψ_p(x_U))‖²₂
supervision_transfer_finetune  Ψ from a transfer run   L_REG, Eq. (1) of `method.md`, on ``data.train_fraction``
                               (+ fresh head) on U     of the labels; ``transfer.finetune`` whole | head;
                                                       without ``model.init``: the from-scratch baseline
=============================  ======================  ===============================================================

- **Transfer points** P = ``transfer.points`` (``layer4`` by default, the pool5 analogue; ``layer3``;
  several at once, e.g. ``[layer3, layer4]`` — conv3 + fc7 was the paper's best, Table 4). Each
  N_p = B·C·H·W (the squared ℓ2 of Eq. 2 averaged per element), the points' terms are summed.
- **Adapter** t_p = 1×1 convolution (with bias) + ReLU, C_Ψ(p) → C_Φ(p), paper §3. If Ψ's map has
  another spatial size it is resized bilinearly to Φ's. If the architectures differ (arch or width),
  c_p is the root mean square of Φ_p on the first training batch (the paper's "scaling layer to make
  the average norm of features comparable", VGG → AlexNet), kept in the network's ``feature_scale``
  buffer; with one architecture c_p = 1.
- **Optimiser** of Ψ and t: the paper gives none for the transfer stage (100K iterations); we use
  Adam at lr 1e-4 (``configs/supervision_transfer.yaml``). Φ is in eval mode (BatchNorm statistics
  fixed) and without gradients; the phase never reads ``target``.
- **Zero-shot** (paper Table 5): the transfer run's evaluated network (``model.pt``) *is*
  Φ's layers above the deepest point and Φ's head on t(Ψ's trunk), ``ŷ = Φ_head(Φ_{>p}(c_p·t_p(Ψ_p(x_U))))``,
  so ``tools/evaluate.py`` scores it without any U label; the fine-tune phase takes Ψ's trunk from it
  (its head ``student.fc`` is never trained by the transfer and is replaced by a fresh one).
- **Depth encoding** ``transfer.depth_encoding``: ``normalised`` (the toolkit's ``depth_input`` d̃ =
  clip((z − z_root)/0.15 m, −1, 1), background 1) or ``hha``, a 3-channel HHA analogue for hand crops
  computed inside the network from d̃: HHA's horizontal disparity, height above ground and angle with
  gravity are scene quantities; we use (i) nearness −d̃ (disparity up to an affine map), (ii) the
  vertical component n_y of the surface normal (camera "up" in place of gravity) and (iii) its
  component n_z towards the camera (the angle to the viewing ray), n ∝ (−k ∂d̃/∂u, −k ∂d̃/∂v, 1) with
  k = H/2 (gradients per normalised image coordinate, the crop spanning about the depth cube).
- **Directions**: L = RGB, U = depth (paper-faithful; Φ is a ``student`` run) and L = depth,
  U = RGB (reverse; Φ is a ``teacher`` run) — ``configs/supervision_transfer*.yaml``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from models.transfer_network import FAMILY
from training.checkpoint import CheckpointError, load_checkpoint, load_model_weights, unwrap
from training.methods.supervision_transfer_config import FINETUNE, TRANSFER
from training.phases import Phase, input_key

def transfer_loss(teacher: Mapping[str, torch.Tensor], adapted: Mapping[str, torch.Tensor],
                  scales: Mapping[str, float | torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. (2): Σ_p mean((Φ_p/c_p − t_p(Ψ_p))²), and each point's term."""
    terms = {p: ((teacher[p].float() / scales[p] - adapted[p].float()) ** 2).mean() for p in adapted}
    return sum(terms.values()), terms


def _student_info(cfg) -> dict:
    modality = cfg.transfer.modality
    hha = modality == "depth" and cfg.transfer.depth_encoding == "hha"
    return {"family": FAMILY, "arch": cfg.model.arch, "width": cfg.model.width,
            "in_channels": 1 if modality == "depth" and not hha else 3, "num_outputs": 63, "modality": modality,
            "encoding": cfg.transfer.depth_encoding if modality == "depth" else "rgb", "phase": cfg.phase,
            "image_size": cfg.data.image_size}


def _teacher_state(cfg) -> dict:
    """Φ's checkpoint, checked: a plain ResNet of the other modality."""
    path = cfg.transfer.teacher
    state = load_checkpoint(path)
    info = state["model_info"]
    if info.get("family", "resnet") != "resnet":
        raise CheckpointError(f"{path}: transfer.teacher should be a plain ResNet run (teacher or student phase), "
                              f"found network family {info.get('family')!r}")
    if info.get("modality") == cfg.transfer.modality:
        raise CheckpointError(f"{path}: transfer.teacher reads {info.get('modality')}, the same modality as the "
                              f"student (transfer.modality={cfg.transfer.modality}); it should read the paired other one")
    return state


# --------------------------------------------------------------------------- the two phases


class TransferPhase(Phase):
    """Transfer stage, Eq. (2): Ψ and t_p regress frozen Φ's features on paired, unlabelled images."""

    needs: tuple[str, ...] = ()

    @classmethod
    def input_modality(cls, cfg) -> str:
        return cfg.transfer.modality

    @classmethod
    def model_info(cls, cfg) -> dict:
        teacher = _teacher_state(cfg)["model_info"]
        keep = ("arch", "width", "in_channels", "num_outputs", "modality", "phase")
        return dict(_student_info(cfg), teacher={k: teacher[k] for k in keep if k in teacher},
                    points=list(cfg.transfer.points))

    @classmethod
    def trainable_parameters(cls, cfg, model) -> list[nn.Parameter]:
        network = unwrap(model)
        return [p for p in (*network.student.parameters(), *network.adapters.parameters()) if p.requires_grad]

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
        state = _teacher_state(cfg)
        network = unwrap(model)
        load_model_weights(network.teacher, state["model"], cfg.transfer.teacher)
        network.teacher.eval()
        self.teacher_input = input_key(state["model_info"]["modality"])
        self.needs = (self.teacher_input, self.input)  # no "target": the transfer uses no labels

    def loss(self, batch):
        network = unwrap(self.model)
        x_teacher, x_student = self._to(batch[self.teacher_input]), self._to(batch[self.input])
        with torch.no_grad(), torch.autocast(**self.autocast):
            teacher = network.teacher.forward_features(x_teacher)
        if bool((network.feature_scale == 0).any()):  # architectures differ: c_p from the first batch
            with torch.no_grad():
                network.feature_scale.copy_(torch.stack([teacher[p].float().pow(2).mean().sqrt().clamp_min(1e-8)
                                                         for p in network.points]))
        with torch.autocast(**self.autocast):
            features = self.model(x_student)["features"]
            adapted = {p: network.adapted(features, p, teacher[p].shape[-2:]) for p in network.points}
        scales = dict(zip(network.points, network.feature_scale))
        total, terms = transfer_loss(teacher, adapted, scales)
        scalars = {"loss/transfer": total.item(), **{f"loss/transfer_{p}": v.item() for p, v in terms.items()}}
        return total, scalars


class FinetunePhase(Phase):
    """Fine-tune stage: Ψ's trunk (from a transfer run, or random: the baseline) + a fresh head, L_REG."""

    @classmethod
    def input_modality(cls, cfg) -> str:
        return cfg.transfer.modality

    @classmethod
    def model_info(cls, cfg) -> dict:
        return _student_info(cfg)

    @classmethod
    def initialise(cls, cfg, model, init, source) -> None:
        """Ψ's trunk from a ``supervision_transfer`` checkpoint; the head stays this run's fresh one."""
        info, own = init["model_info"], _student_info(cfg)
        if info.get("family") != FAMILY:
            raise CheckpointError(f"{source}: model.init should be a supervision_transfer run's model.pt, "
                                  f"found network family {info.get('family', 'resnet')!r}")
        for key in ("modality", "encoding", "arch", "width"):
            if info.get(key) != own[key]:
                raise CheckpointError(f"{source}: the transferred network has {key}={info.get(key)!r}, this run "
                                      f"{own[key]!r}; fine-tune with the transfer run's settings")
        student = unwrap(model).student
        weights = dict(student.state_dict())
        weights.update({k[len("student."):]: v for k, v in init["model"].items()
                        if k.startswith("student.") and not k.startswith("student.fc.")})
        load_model_weights(student, weights, source)

    @classmethod
    def trainable_parameters(cls, cfg, model) -> list[nn.Parameter]:
        network = unwrap(model)
        if cfg.transfer.finetune == "head":  # Table 1 row B ("ft fc only"): the trunk is frozen
            network.requires_grad_(False)
            network.student.fc.requires_grad_(True)
            return list(network.student.fc.parameters())
        return [p for p in network.parameters() if p.requires_grad]

    def train_mode(self) -> None:
        """Whole: training mode. Head only: the frozen trunk keeps its BatchNorm statistics (eval mode)."""
        self.model.train(self.cfg.transfer.finetune == "whole")


PHASE_CLASSES = {TRANSFER: TransferPhase, FINETUNE: FinetunePhase}
