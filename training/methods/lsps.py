"""LSPS: a latent space shared by synthetic depth, real depth and pose (Abdi et al., BMVC 2018).

Networks: :class:`models.vae_gan.LSPSNet` (one module holding the pose VAE E_y/G_y, the depth
VAE-GANs E_s/E_r, G_s/G_r, D_s/D_r with their shared layers, the mapping M and the posterior P);
it is every stage's evaluated network, so a stage's ``model.pt`` initialises the next
(``model.init``) and ``tools/evaluate.py`` rebuilds it. Losses: :mod:`training.methods.lsps_losses`.

==============  =================================  ===========================================  ===============
phase           data                               objective (trained parameters)               paper
==============  =================================  ===========================================  ===============
lsps_pose       data.train: poses y (target)       L_VAE_y (E_y, G_y)                           Eq. 1, stage 1
lsps_depth      data.train: synthetic x_s with y;  generator step: VAE_s + VAE_r + GAN_s/r on   Eqs. 2-6, 9
                data.adapt: real x_r (labels for   the translations + CC_s + CC_r + MAP_s       (λ8 = 1e-4),
                data.adapt_label_fraction)         (+ MAP_r on labelled rows) + λ8·FM           §3.3, stage 2
                                                   (E_s, E_r, G_s, G_r, M); discriminator
                                                   step: GAN_s, GAN_r, GAN of G_s(M(z_y))
                                                   (D_s, D_r); E_y, G_y frozen
lsps_posterior  as lsps_depth                      POS_s + FM (+ POS_r on labelled rows)        Eqs. 7-9, §3.3,
                                                   (P = D_s/D_r trunk + conv20 head); the rest  stage 3
                                                   frozen; prediction G_y(P(x_r))
lsps_regressor  data.train only                    POS_s (P's synthetic branch + head); the     baselines
                                                   synthetic-only / real-supervised baseline:
                                                   G_y(P(x)) trained on one labelled domain
==============  =================================  ===========================================  ===============

The stream of ``data.adapt`` (:mod:`training.adapt`) delivers ``depth_input`` of every real sample
and ``target`` only for the labelled fraction; the phases use a real pose only where
``batch["adapt"]["labelled"]`` is true (:func:`lsps_losses.masked_mean`), so with fraction 0 no real
pose reaches a loss. The schedule (paper: 200K / 500K / 50K iterations, batch 128 / 1 / 32, Adam
1e-4) is the configs' ``optim.*``.
"""
from __future__ import annotations

import torch

from training.methods import lsps_config
from training.methods import lsps_losses as L
from training.phases import Phase
from training.checkpoint import unwrap


class _LSPSPhase(Phase):
    """Common hooks: depth input, the ``lsps`` network family, the full state loaded from ``model.init``."""

    needs = ("target",)
    branch = "real"

    @classmethod
    def input_modality(cls, cfg):
        return "depth"

    @classmethod
    def model_info(cls, cfg):
        values = lsps_config.resolved(cfg.lsps)
        branch = cfg.lsps.branch if cls.branch == "config" else cls.branch
        return {"family": "lsps", "arch": "lsps_vae_gan", "width": cfg.model.width, "in_channels": 1,
                "image_size": cfg.data.image_size, "pose_hidden": values["pose_hidden"],
                "pose_latent": cfg.lsps.pose_latent, "num_outputs": 63, "modality": "depth", "phase": cfg.phase,
                "branch": branch}

    @classmethod
    def trainable_parameters(cls, cfg, model):
        return cls.parameters_of(unwrap(model))

    @staticmethod
    def parameters_of(net):
        raise NotImplementedError

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
        self.w = lsps_config.resolved(cfg.lsps)
        for group in optimizer.param_groups:
            group["betas"] = tuple(self.w["betas"])
        self.net = unwrap(model)
        self.noise_generator = self.own_generator("noise", 104_729)  # ε of every reparameterisation (checkpointed)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor | None = None) -> torch.Tensor:
        """z = μ + σ·ε with ε from the phase's generator (unit σ without ``logvar``)."""
        return L.reparameterise(mu, logvar, generator=self.noise_generator)

    def pose_latent(self, target: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """z_y ~ q_y(z_y | y) of the frozen pose VAE: target (B,21,3) → (B, 20)."""
        with torch.no_grad():
            mu, logvar = self.net.pose.encode(target.flatten(1))
            return self.sample(mu, logvar) if sample else mu


class PoseVAEPhase(_LSPSPhase):
    """Stage 1: the pose VAE on the poses of data.train (Eq. 1)."""

    @staticmethod
    def parameters_of(net):
        return net.pose_parameters()

    def loss(self, batch):
        y = self._to(batch["target"]).flatten(1)
        mu, logvar = self.net.pose.encode(y)
        y_hat = self.net.pose.decode(self.sample(mu, logvar))
        loss, scalars = L.pose_vae_loss(y, y_hat, mu, logvar, self.w["lambda0"], self.w["lambda1"])
        return loss, {"loss/vae_y": loss.item(), **{f"loss/{k}": v for k, v in scalars.items()}}


class DepthPhase(_LSPSPhase):
    """Stage 2: depth VAE-GANs and M (Eq. 2 without L_POS_s; with λ8 = ``lambda8_depth`` FM).

    ``loss`` is the generator objective (E_s, E_r, G_s, G_r, M; the trainer's optimiser);
    ``update`` takes its step, then ``disc_steps`` discriminator steps (``optimizers["disc"]``)
    on the real images and the translations / M-generated images of this batch.
    """

    uses_adapt = True
    adapt_keys = ("depth_input",)
    adapt_label_keys = ("target",)

    @staticmethod
    def parameters_of(net):
        return net.generator_parameters()

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
        self.optimizers["disc"] = torch.optim.Adam(self.net.discriminator_parameters(), lr=cfg.optim.lr,
                                                   betas=tuple(self.w["betas"]), weight_decay=cfg.optim.weight_decay)
        self._fakes = None

    def loss(self, batch):
        w, net = self.w, self.net
        x_s, y = self._to(batch["depth_input"]), self._to(batch["target"])
        real = batch["adapt"]
        x_r, y_r, labelled = self._to(real["depth_input"]), self._to(real["target"]), self._to(real["labelled"])
        mu_s, mu_r = net.encode(x_s, "s"), net.encode(x_r, "r")
        z_s, z_r = self.sample(mu_s), self.sample(mu_r)
        x_ss, x_rr = net.generate(z_s, "s"), net.generate(z_r, "r")  # reconstructions
        x_sr, x_rs = net.generate(z_s, "r"), net.generate(z_r, "s")  # translations
        vae = L.vae_loss(x_s, x_ss, mu_s, w["lambda2"], w["lambda3"]) + L.vae_loss(x_r, x_rr, mu_r, w["lambda2"],
                                                                                   w["lambda3"])  # Eq. 3
        logit_sr, f_sr = net.discriminate(x_sr, "r")
        logit_rs, f_rs = net.discriminate(x_rs, "s")
        gan = L.gan_generator_loss(logit_sr, w["lambda4"]) + L.gan_generator_loss(logit_rs, w["lambda4"])  # Eq. 4
        mu_sr, mu_rs = net.encode(x_sr, "r"), net.encode(x_rs, "s")  # Eq. 5: back through the other encoder
        cc = (L.vae_loss(x_s, net.generate(self.sample(mu_sr), "s"), mu_sr, w["lambda2"], w["lambda3"])
              + L.vae_loss(x_r, net.generate(self.sample(mu_rs), "r"), mu_rs, w["lambda2"], w["lambda3"]))
        m_s = net.map(self.pose_latent(y))  # Eq. 6, MAP_s
        x_ms = net.generate(m_s, "s")
        logit_ms, _ = net.discriminate(x_ms, "s")
        map_s = L.mapping_loss(m_s, z_s, x_s, x_ms, logit_ms, w["lambda4"], w["lambda5"], w["lambda6"])
        scalars = {}
        total = vae + gan + cc + map_s
        if bool(labelled.any()):  # §3.3: MAP_r on the labelled real rows only
            m_r = net.map(self.pose_latent(y_r))
            x_mr = net.generate(m_r, "r")
            logit_mr, _ = net.discriminate(x_mr, "r")
            map_r = L.mapping_loss(m_r, z_r, x_r, x_mr, logit_mr, w["lambda4"], w["lambda5"], w["lambda6"], labelled)
            total = total + map_r
            scalars["loss/map_r"] = map_r.item()
        _, f_ss = net.discriminate(x_ss, "s")
        _, f_rr = net.discriminate(x_rr, "r")
        fm = L.feature_matching_loss(f_ss, f_sr, f_rs, f_rr, w["lambda8_depth"])  # Eq. 9
        total = total + fm
        self._fakes = (x_s, x_r, x_sr.detach(), x_rs.detach(), x_ms.detach())
        scalars.update({"loss/gen": total.item(), "loss/vae": vae.item(), "loss/gan_gen": gan.item(),
                        "loss/cc": cc.item(), "loss/map_s": map_s.item(), "loss/fm": fm.item()})
        return total, scalars

    def discriminator_loss(self) -> torch.Tensor:
        """D_s: x_s real, x^{r→s} and G_s(M(z_y)) fake; D_r: x_r real, x^{s→r} fake (Eqs. 4, 6)."""
        x_s, x_r, x_sr, x_rs, x_ms = self._fakes
        net, lam = self.net, self.w["lambda4"]
        d_s = L.gan_discriminator_loss(net.discriminate(x_s, "s")[0],
                                       [net.discriminate(x_rs, "s")[0], net.discriminate(x_ms, "s")[0]], lam)
        d_r = L.gan_discriminator_loss(net.discriminate(x_r, "r")[0], [net.discriminate(x_sr, "r")[0]], lam)
        return d_s + d_r

    def update(self, batch, loss):
        self.optimizer.zero_grad(set_to_none=True)  # Step A: E_s, E_r, G_s, G_r, M
        loss.backward()
        self.optimizer.step()
        disc = self.optimizers["disc"]  # Step B: D_s, D_r (their gradients from step A are discarded)
        for _ in range(self.cfg.lsps.disc_steps):
            disc.zero_grad(set_to_none=True)
            d_loss = self.discriminator_loss()
            d_loss.backward()
            disc.step()
        self._fakes = None
        for p in self.net.parameters():  # no gradient outlives the step (frozen parts included)
            p.grad = None
        return {"loss/disc": d_loss.item()}


class PosteriorPhase(_LSPSPhase):
    """Stage 3: P on synthetic poses with feature matching between the domains (Eq. 8), POS_r on labels."""

    uses_adapt = True
    adapt_keys = ("depth_input",)
    adapt_label_keys = ("target",)
    branch = "config"

    @staticmethod
    def parameters_of(net):
        return net.posterior_parameters()

    def loss(self, batch):
        w, net = self.w, self.net
        x_s, y = self._to(batch["depth_input"]), self._to(batch["target"])
        real = batch["adapt"]
        x_r, y_r, labelled = self._to(real["depth_input"]), self._to(real["target"]), self._to(real["labelled"])
        with torch.no_grad():  # the frozen depth model's reconstructions and translations
            mu_s, mu_r = net.encode(x_s, "s"), net.encode(x_r, "r")
            x_ss, x_sr = net.generate(mu_s, "s"), net.generate(mu_s, "r")
            x_rs, x_rr = net.generate(mu_r, "s"), net.generate(mu_r, "r")
        pos_s = L.posterior_loss(net.posterior(x_s, "s"), self.pose_latent(y), w["lambda7"])  # Eq. 7
        fm = L.feature_matching_loss(net.trunk(x_ss, "s"), net.trunk(x_sr, "r"), net.trunk(x_rs, "s"),
                                     net.trunk(x_rr, "r"), w["lambda8"])  # Eq. 9
        total = pos_s + fm
        scalars = {"loss/pos_s": pos_s.item(), "loss/fm": fm.item()}
        if bool(labelled.any()):  # §3.3: POS_r on the labelled real rows only
            pos_r = L.posterior_loss(net.posterior(x_r, "r"), self.pose_latent(y_r), w["lambda7"], labelled)
            total = total + pos_r
            scalars["loss/pos_r"] = pos_r.item()
        scalars["loss/pos"] = total.item()
        return total, scalars

    def update(self, batch, loss):
        scalars = super().update(batch, loss)
        for p in self.net.parameters():
            p.grad = None
        return scalars


class RegressorPhase(_LSPSPhase):
    """Baseline: G_y(P(x)) trained with POS_s on data.train alone (synthetic-only, or real-supervised when
    data.train is the real set), P's synthetic branch, from the lsps_pose run's pose VAE."""

    branch = "synthetic"

    @staticmethod
    def parameters_of(net):
        return net.posterior_parameters()

    def loss(self, batch):
        x, y = self._to(batch["depth_input"]), self._to(batch["target"])
        pos = L.posterior_loss(self.net.posterior(x, "s"), self.pose_latent(y), self.w["lambda7"])
        return pos, {"loss/pos_s": pos.item()}


PHASE_CLASSES = {"lsps_pose": PoseVAEPhase, "lsps_depth": DepthPhase, "lsps_posterior": PosteriorPhase,
                 "lsps_regressor": RegressorPhase}
