"""Meta-learning the prior phi (paper Sect. 4.2, Algorithm 1; supplement Sect. 2, its Algorithm 1 = "Algorithm 3").

One meta-training iteration k on a source batch (x rgb, x~ depth, y):

1. E-step (virtual): ``theta''_0 = theta_k``; for ``i < l``:
   ``theta''_{i+1} = theta''_i - alpha * grad F(x, y; theta''_i, phi_k)`` with
   ``F = L_REG + R(theta; phi)`` (Eq. 9) and ``R = sum_i phi_i r(theta_i)`` (Eq. 10 for r = theta^2).
2. M-step: ``phi_{k+1} = phi_k - beta * grad_phi G(x, x~, y; theta''_l)`` with ``G = L_REG + L_DIST`` (Eq. 8).
3. ``theta_{k+1} = theta_k - alpha * grad_theta G(x, x~, y; theta_k)`` — the normal distillation
   update; this module only writes ``grad_theta G`` into ``.grad`` and the caller's optimiser
   (Adam in the paper) takes the step.

Three ways to get the phi-gradient of step 2:

* ``algorithm="exact"`` (Algorithm 1): the l virtual steps are kept in the autograd graph
  (``create_graph=True``) and evaluated with ``torch.func.functional_call``; ``grad_phi G``
  is back-propagated through them (second order when l > 1). ``grad L_REG(theta''_0)`` at
  ``theta''_0 = theta_k`` does not depend on phi, so it enters the graph as a constant; for
  l = 1 the exact gradient therefore never needs a Hessian-vector product.
* ``algorithm="efficient"`` (supplement Algorithm 1): for an element-wise prior the inner
  step is ``theta'' <- theta'' - alpha * grad L_REG(theta'') - alpha * phi * r'(theta'')``, for
  the weighted l2 prior ``theta''(1 - 2 alpha phi) - alpha * grad L_REG(theta'')``. Its
  phi-dependence is explicit, so with the diagonal Jacobian ``J_i = d theta''_i / d phi``::

      J_0 = 0,   J_{i+1} = J_i * (1 - alpha * phi * r''(theta''_i)) - alpha * r'(theta''_i)
      grad_phi G = J_l * dG/dtheta''_l                          (element-wise)

  For l = 1 this is exact: ``dG/dphi_i = -2 alpha theta_i dG/dtheta''_i`` (l2) and equals
  Algorithm 1. For l > 1 the recursion drops the term ``-alpha * H_REG(theta''_i) J_i``
  (the Hessian of L_REG), i.e. it is the first-order treatment the supplement describes
  ("we only need to compute the first order derivative"), an approximation of Algorithm 1.
* ``algorithm="first_order"``: the l = 1 gradient above with ``dG/dtheta''`` at the virtual
  point replaced by ``grad G(theta)``, which the theta-update (step 3) computes anyway::

      dG/dphi_i ~= -l alpha r'(theta_i) dG/dtheta_i        (l2: -2 l alpha theta_i dG/dtheta_i,
                                                           l1: -l alpha sign(theta_i) dG/dtheta_i)

  so it costs what a distillation step costs (teacher forward, one student forward, one
  backward of G) plus element-wise work on the parameters; no virtual forward is run and
  ``losses`` has no ``g_virtual``. Error, l = 1: the exact gradient is
  ``-alpha r'(theta) * grad G(theta'')`` with ``theta'' - theta = -alpha v``,
  ``v = grad L_REG(theta) + phi * r'(theta)``, hence (H_G the Hessian of G)::

      exact - first_order = alpha^2 r'(theta) * (H_G(theta) v) + O(alpha^3)

  a relative error of order ``alpha ||H_G||`` (tests/test_meta.py checks this remainder). For
  l > 1, ``d theta''_l / d phi = -alpha sum_{i<l} r'(theta''_i) + O(alpha^2) = -l alpha r'(theta) + O(alpha^2)``:
  the same first order in alpha, independent of l in cost. Under DDP the all-reduced
  ``grad G(theta)`` is the full batch's, so phi matches a single-process run exactly.

Sharing of passes (the cost promise, see ``docs/step_benchmark.md``): one student forward at
theta gives L_REG and L_DIST; ``grad L_REG(theta)`` serves both the first virtual step and
``grad G(theta) = grad L_REG + grad L_DIST`` of step 3; the teacher runs once, without
gradients, and its features serve both evaluations of G.

BatchNorm policy: the student must be in training mode. The forward at theta is the real
training forward and updates the running statistics once, exactly like a distillation step.
Every virtual forward (at theta''_i, i >= 1, and at theta''_l) uses batch statistics and runs
on *copies* of the buffers, so it never changes the real running statistics or
``num_batches_tracked``.
"""
from __future__ import annotations

from collections.abc import MutableMapping

import torch
from torch import autograd, nn
from torch.func import functional_call

from training.losses import ATTENTION_WEIGHT, LossTerms, distillation_loss, regression_loss, teacher_features
from training.regularizers import PRIORS

ALGORITHMS = ("exact", "efficient", "first_order")


def _grads(loss: torch.Tensor, inputs, **kwargs) -> list[torch.Tensor]:
    """d loss / d inputs; parameters that do not reach ``loss`` get zeros (e.g. the head for L_DIST)."""
    return list(autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True, **kwargs))


def _accumulate(params, grads) -> None:
    """Add ``grads`` into ``p.grad`` like ``backward()`` does; fresh tensors the caller gives up (no copy)."""
    for p, g in zip(params, grads):
        if p.grad is None:
            p.grad = g.detach()
        else:
            p.grad.add_(g.detach())


def distillation_step(student: nn.Module, teacher: nn.Module, rgb: torch.Tensor, depth: torch.Tensor,
                      target: torch.Tensor, attention_weight: float = ATTENTION_WEIGHT) -> dict[str, float]:
    """Cross-modal distillation step (paper Sect. 3): back-propagate G = L_REG + L_DIST (Eq. 8).

    Accumulates ``grad_theta G`` into the student's ``.grad``; the caller zeroes the gradients
    and steps its optimiser. Returns the losses as floats (``l_reg``, ``l_dist``, ``g``).
    """
    t_feats = teacher_features(teacher, depth)
    out = student(rgb)
    l_reg = regression_loss(out["pred"], target)
    l_dist = distillation_loss(out["features"], t_feats, attention_weight)
    g = l_reg + l_dist
    g.backward()
    return {"l_reg": l_reg.item(), "l_dist": l_dist.item(), "g": g.item()}


class MetaPriorLearner:
    """Learns phi while the student is distilled (Algorithm 1 of the paper, its efficient form, or first order).

    Args:
        student: network with ``forward(x) -> {"pred", "features"}`` (``models.ResNet``), in train mode.
        teacher: frozen depth network of the same kind; put in eval mode, gradients switched off.
        phi: name -> tensor parallel to ``student.named_parameters()`` (``training.prior.init_phi``);
            updated in place by :meth:`step` with plain SGD and no constraint (as in the paper;
            a negative phi_i rewards a large theta_i instead of decaying it).
        alpha: inner step size of the virtual step (paper: the student's learning rate, 2.5e-4).
        beta: meta learning rate of the SGD update of phi (paper: 1e-3).
        inner_steps: l, the number of virtual steps (paper: 1).
        algorithm: ``"exact"`` (second order through the unrolled steps), ``"efficient"`` or
            ``"first_order"`` (phi-gradient from grad G(theta), the cost of a distillation step).
        prior: ``"l2"`` (R = sum phi theta^2, Eq. 10) or ``"l1"`` (sum phi |theta|).
        attention_weight: lambda of Eq. (4) (used when ``terms`` is not given).
        terms: the run's loss scales (``training.losses.LossTerms``: L_REG reduction, weights and
            normalisation of L_DIST); default: the paper's terms with ``attention_weight``.

    Usage, one iteration (the numbered steps of Algorithm 1)::

        optimizer.zero_grad()
        losses = learner.step(rgb, depth, target)   # steps 1-2, and grad G(theta) into .grad
        optimizer.step()                            # step 3
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, phi: MutableMapping[str, torch.Tensor],
                 alpha: float = 2.5e-4, beta: float = 1e-3, inner_steps: int = 1, algorithm: str = "exact",
                 prior: str = "l2", attention_weight: float = ATTENTION_WEIGHT, terms: LossTerms | None = None):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown meta algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; known: {', '.join(sorted(PRIORS))}")
        if inner_steps < 1:
            raise ValueError(f"inner_steps (l) must be >= 1, got {inner_steps}")
        self.names = [n for n, _ in student.named_parameters()]
        params = dict(student.named_parameters())
        if set(phi) != set(params):
            missing, extra = sorted(set(params) - set(phi)), sorted(set(phi) - set(params))
            raise KeyError(f"phi does not match the student: missing {missing[:5]}, unknown {extra[:5]}")
        for n in self.names:
            if phi[n].shape != params[n].shape:
                raise ValueError(f"phi[{n!r}] has shape {tuple(phi[n].shape)}, parameter {tuple(params[n].shape)}")
        self.student, self.teacher, self.phi = student, teacher, phi
        self.alpha, self.beta, self.inner_steps = float(alpha), float(beta), int(inner_steps)
        self.algorithm, self.prior, self.attention_weight = algorithm, prior, float(attention_weight)
        self.terms = terms if terms is not None else LossTerms(attention_weight=float(attention_weight))
        teacher.eval()
        teacher.requires_grad_(False)

    # ----------------------------------------------------------------- public API
    def step(self, rgb: torch.Tensor, depth: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """One meta-training iteration: update phi by SGD(beta) and accumulate grad G(theta) into ``.grad``.

        Returns floats: ``l_reg``, ``l_dist``, ``g`` (at theta), ``g_virtual`` (G at theta''_l;
        not for ``first_order``, which evaluates no virtual point) and ``phi_grad_norm``.
        """
        theta_grads, phi_grads, losses = self.meta_gradients(rgb, depth, target)
        params = [p for _, p in self.student.named_parameters()]
        _accumulate(params, [theta_grads[n] for n in self.names])
        with torch.no_grad():  # multi-tensor ops: one dispatch for all parameters, not one per parameter
            grads = [phi_grads[n] for n in self.names]
            torch._foreach_add_([self.phi[n] for n in self.names], grads, alpha=-self.beta)
            losses["phi_grad_norm"] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).item()
        return losses

    def meta_gradients(self, rgb: torch.Tensor, depth: torch.Tensor, target: torch.Tensor):
        """``(grad_theta G(theta), grad_phi G(theta''_l), losses)`` without touching ``.grad`` or phi.

        The only side effect is the one update of the BatchNorm running statistics by the
        forward at theta (the real training forward).
        """
        if not self.student.training:
            raise RuntimeError("MetaPriorLearner needs student.train(): virtual steps use batch statistics")
        t_feats = teacher_features(self.teacher, depth)
        theta = [p for _, p in self.student.named_parameters()]
        out = self.student(rgb)
        l_reg = self.terms.regression(out["pred"], target)
        l_dist = self.terms.distillation(out["features"], t_feats)
        g = l_reg + l_dist
        losses = {"l_reg": l_reg.item(), "l_dist": l_dist.item(), "g": g.item()}
        if self.algorithm == "first_order":
            g_theta, phi_grads = self._first_order(theta, g)
        else:
            second = self._exact if self.algorithm == "exact" else self._efficient
            g_reg, g_dist, phi_grads, g_virtual = second(theta, l_reg, l_dist, rgb, target, t_feats)
            g_theta = [a.detach() + b for a, b in zip(g_reg, g_dist)]
            losses["g_virtual"] = g_virtual.item()
        return dict(zip(self.names, g_theta)), dict(zip(self.names, phi_grads)), losses

    # ----------------------------------------------------------------- internals
    def _virtual_forward(self, params: list[torch.Tensor], rgb: torch.Tensor) -> dict:
        """Student forward at virtual parameters; batch statistics, on copies of the BN buffers."""
        buffers = {n: b.clone() for n, b in self.student.named_buffers()}
        return functional_call(self.student, (dict(zip(self.names, params)), buffers), (rgb,))

    def _objective_g(self, out: dict, target: torch.Tensor, t_feats: dict) -> torch.Tensor:
        """G of Eq. (8) from a forward output and the cached teacher features."""
        return self.terms.regression(out["pred"], target) + self.terms.distillation(out["features"], t_feats)

    def _exact(self, theta, l_reg, l_dist, rgb, target, t_feats):
        """Algorithm 1: unrolled virtual steps in the graph, grad_phi G by autograd (second order)."""
        prior_value = PRIORS[self.prior][0]
        phi = [self.phi[n].detach().requires_grad_() for n in self.names]
        phi_map = dict(zip(self.names, phi))
        # The forward at theta_k serves step 1 (i = 0) and step 3. theta''_0 = theta_k does not
        # depend on phi, so grad L_REG(theta''_0) is a constant of the phi-graph: no create_graph
        # needed there (autograd would never differentiate through it). From i = 1 on, theta''_i
        # depends on phi and grad F(theta''_i) is kept in the graph (second order).
        g_reg = _grads(l_reg, theta, retain_graph=True)
        g_dist = _grads(l_dist, theta)
        virtual, g = theta, g_reg
        for i in range(self.inner_steps):
            if i > 0:
                g = _grads(self.terms.regression(self._virtual_forward(virtual, rgb)["pred"], target), virtual,
                           create_graph=True)
            g_prior = _grads(prior_value(dict(zip(self.names, virtual)), phi_map), virtual, create_graph=True)
            virtual = [t - self.alpha * (a + b) for t, a, b in zip(virtual, g, g_prior)]
        g_virtual = self._objective_g(self._virtual_forward(virtual, rgb), target, t_feats)
        phi_grads = [t.detach() for t in _grads(g_virtual, phi)]
        return g_reg, g_dist, phi_grads, g_virtual.detach()

    def _efficient(self, theta, l_reg, l_dist, rgb, target, t_feats):
        """Supplement Algorithm 1: explicit phi-dependence of the inner step, first-order gradients only."""
        _, d_r, dd_r = PRIORS[self.prior]
        g_reg = _grads(l_reg, theta, retain_graph=True)
        g_dist = _grads(l_dist, theta)
        phi = [self.phi[n].detach() for n in self.names]
        virtual = [t.detach() for t in theta]
        jac = [torch.zeros_like(t) for t in virtual]
        g = g_reg
        for i in range(self.inner_steps):
            if i > 0:
                leaves = [t.requires_grad_() for t in virtual]
                g = _grads(self.terms.regression(self._virtual_forward(leaves, rgb)["pred"], target), leaves)
            with torch.no_grad():
                jac = [j * (1 - self.alpha * f * dd_r(t)) - self.alpha * d_r(t)
                       for j, f, t in zip(jac, phi, virtual)]
                virtual = [t - self.alpha * (a + f * d_r(t)) for t, a, f in zip(virtual, g, phi)]
        leaves = [t.detach().requires_grad_() for t in virtual]
        g_virtual = self._objective_g(self._virtual_forward(leaves, rgb), target, t_feats)
        d_g = _grads(g_virtual, leaves)
        phi_grads = [j * d for j, d in zip(jac, d_g)]
        return [t.detach() for t in g_reg], g_dist, phi_grads, g_virtual.detach()

    def _first_order(self, theta, g):
        """First order in alpha: dG/dphi ~= -l alpha r'(theta) * grad G(theta), from the one backward of G."""
        _, d_r, _ = PRIORS[self.prior]
        g_theta = _grads(g, theta)
        scale = -self.inner_steps * self.alpha
        with torch.no_grad():
            phi_grads = [d_r(t) for t in theta]  # fresh tensors, scaled in place by multi-tensor ops
            torch._foreach_mul_(phi_grads, g_theta)
            torch._foreach_mul_(phi_grads, scale)
        return g_theta, phi_grads
