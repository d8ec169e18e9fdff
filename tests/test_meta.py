"""Meta-learning the prior: phi-gradients of Algorithm 1 (exact) and of the supplement's efficient form.

References are written here independently of ``training.meta``: the l virtual steps are unrolled
with ``torch.func.functional_call`` and the prior's gradient 2*phi*theta written by hand.
"""
import copy

import pytest
import torch
from torch import autograd, nn
from torch.func import functional_call

from models import build_model
from training.losses import regression_loss, student_objective, teacher_features
from training.meta import MetaPriorLearner, distillation_step
from training.prior import init_phi

ALPHA = 0.1


class TinyMLP(nn.Module):
    """Four tanh layers of width 8; each hidden vector is viewed as a (2, 2, 2) activation map."""

    def __init__(self, in_dim, out_dim=6):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_dim, 8)] + [nn.Linear(8, 8) for _ in range(3)])
        self.head = nn.Linear(8, out_dim)

    def forward(self, x):
        h, features = x.flatten(1), {}
        for i, layer in enumerate(self.layers, start=1):
            h = torch.tanh(layer(h))
            features[f"layer{i}"] = h.view(-1, 2, 2, 2)
        return {"pred": self.head(h), "features": features}


def _mlp_problem(seed=0):
    torch.manual_seed(seed)
    student, teacher = TinyMLP(12).double(), TinyMLP(4).double()
    batch = (torch.randn(5, 3, 2, 2, dtype=torch.float64), torch.randn(5, 1, 2, 2, dtype=torch.float64),
             torch.randn(5, 6, dtype=torch.float64))
    return student, teacher, batch


def _conv_problem(seed=0):
    """Tiny ResNet-18 (width 2, BatchNorm) whose running statistics are far from any batch's."""
    torch.manual_seed(seed)
    student = build_model("resnet18", 3, width=2).double()
    teacher = build_model("resnet18", 1, width=2).double()
    for module in student.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.fill_(5.0)
            module.running_var.fill_(100.0)
    batch = (torch.randn(3, 3, 48, 48, dtype=torch.float64), torch.randn(3, 1, 48, 48, dtype=torch.float64),
             torch.randn(3, 63, dtype=torch.float64))
    return student, teacher, batch


def _random_phi(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen, dtype=p.dtype) for n, p in model.named_parameters()}


def _unrolled_objective(student, teacher, batch, phi, steps, alpha=ALPHA, prior="l2", first_order=False,
                        create_graph=False, batch_stats=True):
    """G(x, x~, y; theta''_l(phi)) with theta''_{i+1} = theta''_i - alpha (grad L_REG + grad R)."""
    rgb, depth, target = batch
    t_feats = teacher_features(teacher, depth)
    names = [n for n, _ in student.named_parameters()]
    theta = [p.detach().clone().requires_grad_() for _, p in student.named_parameters()]

    def forward(params):
        model = student if batch_stats else copy.deepcopy(student).eval()
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        return functional_call(model, (dict(zip(names, params)), buffers), (rgb,))

    for _ in range(steps):
        g = autograd.grad(regression_loss(forward(theta)["pred"], target), theta,
                          create_graph=create_graph and not first_order)
        prior_grad = [2 * phi[n] * t if prior == "l2" else phi[n] * torch.sign(t) for n, t in zip(names, theta)]
        theta = [t - alpha * (a + b) for t, a, b in zip(theta, g, prior_grad)]
    out = forward(theta)
    return student_objective(out["pred"], target, out["features"], t_feats)


def _phi_gradient(student, teacher, batch, steps, algorithm, prior="l2", phi=None):
    phi = _random_phi(student) if phi is None else phi
    learner = MetaPriorLearner(student, teacher, phi, alpha=ALPHA, inner_steps=steps, algorithm=algorithm,
                               prior=prior)
    _, phi_grads, _ = learner.meta_gradients(*batch)
    return phi, phi_grads


def _flat(mapping):
    return torch.cat([t.reshape(-1) for t in mapping.values()])


def _relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("steps", [1, 2])
def test_exact_phi_gradient_matches_central_differences_on_a_tiny_mlp(steps):
    student, teacher, batch = _mlp_problem()
    phi, grads = _phi_gradient(student, teacher, batch, steps, "exact")
    eps, numeric = 1e-5, {}
    for name, value in phi.items():
        numeric[name] = torch.zeros_like(value)
        for i in range(value.numel()):
            delta = torch.zeros_like(value)
            delta.view(-1)[i] = eps
            g_plus = _unrolled_objective(student, teacher, batch, {**phi, name: value + delta}, steps)
            g_minus = _unrolled_objective(student, teacher, batch, {**phi, name: value - delta}, steps)
            numeric[name].view(-1)[i] = (g_plus - g_minus).item() / (2 * eps)
    assert _relative_error(_flat(grads), _flat(numeric)) < 1e-3


def _directional_check(student, teacher, batch, steps, algorithm, seed=3):
    """<grad, v> against a central difference along a random v; eps is small because ReLU and
    max-pooling make G only piecewise smooth (eps >= 1e-4 crosses kinks on this network)."""
    phi, grads = _phi_gradient(student, teacher, batch, steps, algorithm)
    gen = torch.Generator().manual_seed(seed)
    direction = {n: torch.randn(t.shape, generator=gen, dtype=t.dtype) for n, t in phi.items()}
    eps = 1e-6
    plus = {n: phi[n] + eps * direction[n] for n in phi}
    minus = {n: phi[n] - eps * direction[n] for n in phi}
    numeric = ((_unrolled_objective(student, teacher, batch, plus, steps)
                - _unrolled_objective(student, teacher, batch, minus, steps)) / (2 * eps)).item()
    analytic = sum((grads[n] * direction[n]).sum() for n in phi).item()
    return analytic, numeric


@pytest.mark.parametrize("steps", [1, 2])
def test_exact_phi_gradient_matches_central_differences_on_a_conv_net_with_batchnorm(steps):
    student, teacher, batch = _conv_problem()
    analytic, numeric = _directional_check(student, teacher, batch, steps, "exact")
    assert abs(analytic - numeric) < 1e-3 * abs(numeric)


def test_second_order_terms_matter_for_two_inner_steps():
    """Guards the l = 2 finite-difference test: dropping the Hessian term changes the gradient."""
    student, teacher, batch = _mlp_problem()
    phi, exact = _phi_gradient(student, teacher, batch, 2, "exact")
    _, efficient = _phi_gradient(student, teacher, batch, 2, "efficient", phi=phi)
    assert _relative_error(_flat(efficient), _flat(exact)) > 1e-2


@pytest.mark.parametrize("prior", ["l2", "l1"])
@pytest.mark.parametrize("problem", [_mlp_problem, _conv_problem])
def test_efficient_equals_exact_for_one_inner_step(problem, prior):
    student, teacher, batch = problem()
    phi, exact = _phi_gradient(student, teacher, batch, 1, "exact", prior)
    _, efficient = _phi_gradient(student, teacher, batch, 1, "efficient", prior, phi=phi)
    for name in phi:
        torch.testing.assert_close(efficient[name], exact[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("prior", ["l2", "l1"])
def test_efficient_matches_its_closed_form(prior):
    """l = 1: dG/dphi_i = -2 alpha theta_i dG/dtheta''_i (l2), -alpha sign(theta_i) dG/dtheta''_i (l1)."""
    student, teacher, batch = _conv_problem()
    rgb, depth, target = batch
    phi, grads = _phi_gradient(student, teacher, batch, 1, "efficient", prior)
    names = [n for n, _ in student.named_parameters()]
    theta = [p.detach().clone().requires_grad_() for _, p in student.named_parameters()]
    buffers = {n: b.clone() for n, b in student.named_buffers()}
    g_reg = autograd.grad(regression_loss(functional_call(student, (dict(zip(names, theta)), buffers), (rgb,))
                                          ["pred"], target), theta)
    d_r = [2 * t if prior == "l2" else torch.sign(t) for t in theta]
    virtual = [(t - ALPHA * (g + phi[n] * d)).detach().requires_grad_()
               for n, t, g, d in zip(names, theta, g_reg, d_r)]
    out = functional_call(student, (dict(zip(names, virtual)), buffers), (rgb,))
    d_g = autograd.grad(student_objective(out["pred"], target, out["features"],
                                          teacher_features(teacher, depth)), virtual)
    for n, d, dg in zip(names, d_r, d_g):
        torch.testing.assert_close(grads[n], -ALPHA * d.detach() * dg, rtol=1e-9, atol=1e-12)


def test_efficient_two_steps_is_the_first_order_unrolled_gradient():
    """l > 1: the recursion J_{i+1} = J_i (1 - 2 alpha phi) - 2 alpha theta''_i drops only the Hessian of L_REG."""
    student, teacher, batch = _mlp_problem()
    phi, grads = _phi_gradient(student, teacher, batch, 2, "efficient")
    leaves = {n: t.clone().requires_grad_() for n, t in phi.items()}
    objective = _unrolled_objective(student, teacher, batch, leaves, 2, first_order=True)
    reference = autograd.grad(objective, list(leaves.values()))
    for name, ref in zip(leaves, reference):
        torch.testing.assert_close(grads[name], ref, rtol=1e-9, atol=1e-12)


def test_virtual_step_uses_batch_statistics():
    student, teacher, batch = _conv_problem()
    phi, grads = _phi_gradient(student, teacher, batch, 1, "exact")
    leaves = {n: t.clone().requires_grad_() for n, t in phi.items()}

    def reference(batch_stats):
        objective = _unrolled_objective(student, teacher, batch, leaves, 1, batch_stats=batch_stats)
        return dict(zip(leaves, autograd.grad(objective, list(leaves.values()))))

    assert _relative_error(_flat(grads), _flat(reference(batch_stats=True))) < 1e-9
    assert _relative_error(_flat(grads), _flat(reference(batch_stats=False))) > 1e-2


@pytest.mark.parametrize("algorithm,steps", [("exact", 1), ("exact", 2), ("efficient", 2), ("first_order", 1)])
def test_step_theta_gradient_bn_statistics_and_phi_update(algorithm, steps):
    student, teacher, batch = _conv_problem()
    reference = copy.deepcopy(student)
    phi = _random_phi(student)
    phi_before = {n: t.clone() for n, t in phi.items()}
    learner = MetaPriorLearner(student, teacher, phi, alpha=ALPHA, beta=0.5, inner_steps=steps,
                               algorithm=algorithm)
    _, phi_grads, _ = learner.meta_gradients(*batch)
    student.load_state_dict(reference.state_dict())  # undo the real forward's statistics update
    losses = learner.step(*batch)
    distillation_step(reference, teacher, *batch)

    # theta: exactly the gradient of a distillation step (Algorithm 1, line 10)
    for (name, p), (_, q) in zip(student.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)
    # BatchNorm: running statistics exactly as after the one real training forward
    for (name, b), (_, c) in zip(student.named_buffers(), reference.named_buffers()):
        assert torch.equal(b, c), name
    # phi: one SGD step of size beta (line 9)
    for name in phi:
        torch.testing.assert_close(phi[name], phi_before[name] - 0.5 * phi_grads[name], rtol=1e-12, atol=0)
    virtual = set() if algorithm == "first_order" else {"g_virtual"}
    assert set(losses) == {"l_reg", "l_dist", "g", "phi_grad_norm"} | virtual
    assert all(p.grad is None for p in teacher.parameters())


def test_invalid_configuration_is_rejected():
    student, teacher, batch = _mlp_problem()
    phi = init_phi(student)
    with pytest.raises(ValueError, match="known: exact, efficient"):
        MetaPriorLearner(student, teacher, phi, algorithm="fast")
    with pytest.raises(ValueError, match="known: l1, l2"):
        MetaPriorLearner(student, teacher, phi, prior="gauss")
    with pytest.raises(KeyError, match="missing"):
        MetaPriorLearner(student, teacher, {k: v for k, v in phi.items() if k != "head.bias"})
    learner = MetaPriorLearner(student.eval(), teacher, phi)
    with pytest.raises(RuntimeError, match="needs student.train"):
        learner.step(*batch)


# ----------------------------------------------------------------- first order (issue 12)
def _objective_and_gradients(student, teacher, batch, create_graph=False):
    """theta leaves, grad L_REG(theta) and grad G(theta), by functional_call on copies of the buffers."""
    rgb, depth, target = batch
    names = [n for n, _ in student.named_parameters()]
    theta = [p.detach().clone().requires_grad_() for _, p in student.named_parameters()]
    buffers = {n: b.clone() for n, b in student.named_buffers()}
    out = functional_call(student, (dict(zip(names, theta)), buffers), (rgb,))
    l_reg = regression_loss(out["pred"], target)
    g = student_objective(out["pred"], target, out["features"], teacher_features(teacher, depth))
    g_reg = autograd.grad(l_reg, theta, retain_graph=True)
    g_theta = autograd.grad(g, theta, create_graph=create_graph)
    return names, theta, g_reg, g_theta


def _phi_gradients(student, teacher, batch, phi, alpha, steps=1, prior="l2"):
    """{algorithm: flat phi-gradient} for exact and first_order at the same theta, phi and alpha."""
    grads = {}
    for algorithm in ("exact", "first_order"):
        learner = MetaPriorLearner(student, teacher, phi, alpha=alpha, inner_steps=steps, algorithm=algorithm,
                                   prior=prior)
        grads[algorithm] = _flat(learner.meta_gradients(*batch)[1])
    return grads


def _cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


@pytest.mark.parametrize("prior,steps", [("l2", 1), ("l1", 1), ("l2", 2)])
def test_first_order_is_minus_l_alpha_r_prime_times_grad_g(prior, steps):
    """dG/dphi ~= -l alpha r'(theta) * grad G(theta); r' = 2 theta (l2) or sign(theta) (l1); theta grad unchanged."""
    student, teacher, batch = _conv_problem()
    phi = _random_phi(student)
    learner = MetaPriorLearner(student, teacher, phi, alpha=ALPHA, inner_steps=steps, algorithm="first_order",
                               prior=prior)
    theta_grads, phi_grads, _ = learner.meta_gradients(*batch)
    names, theta, _, g_theta = _objective_and_gradients(student, teacher, batch)
    for n, t, g in zip(names, theta, g_theta):
        d_r = 2 * t.detach() if prior == "l2" else torch.sign(t.detach())
        torch.testing.assert_close(phi_grads[n], -steps * ALPHA * d_r * g, rtol=1e-9, atol=1e-14, msg=n)
        torch.testing.assert_close(theta_grads[n], g, rtol=1e-9, atol=1e-14, msg=n)


@pytest.mark.parametrize("prior", ["l2", "l1"])
def test_first_order_error_is_the_second_order_taylor_term(prior):
    """l = 1: exact - first_order = alpha^2 r'(theta) * H_G(theta) v + O(alpha^3), v = grad L_REG + phi r'.

    On the smooth (tanh) network the measured difference must match that term to a relative
    O(alpha), and the relative error and cosine of first_order must be the ones it predicts.
    """
    student, teacher, batch = _mlp_problem()
    phi = _random_phi(student)
    names, theta, g_reg, g_theta = _objective_and_gradients(student, teacher, batch, create_graph=True)
    d_r = [2 * t.detach() if prior == "l2" else torch.sign(t.detach()) for t in theta]
    v = [(a + phi[n] * d).detach() for n, a, d in zip(names, g_reg, d_r)]
    h_v = autograd.grad(g_theta, theta, grad_outputs=v)  # Hessian-vector product H_G v
    curvature = torch.cat([(d * h).reshape(-1) for d, h in zip(d_r, h_v)])  # r' * H_G v
    slope = torch.cat([(d * g.detach()).reshape(-1) for d, g in zip(d_r, g_theta)])  # r' * grad G
    for alpha in (1e-2, 1e-3, 2.5e-4):
        grads = _phi_gradients(student, teacher, batch, phi, alpha, prior=prior)
        difference = grads["exact"] - grads["first_order"]
        predicted = alpha ** 2 * curvature
        assert _relative_error(difference, predicted) < 20 * alpha  # the remainder is O(alpha^3)
        # relative error of first_order = alpha ||r' H v|| / ||r' grad G|| to leading order
        expected_error = alpha * (curvature.norm() / slope.norm()).item()
        measured_error = _relative_error(grads["first_order"], grads["exact"])
        assert measured_error == pytest.approx(expected_error, rel=20 * alpha)
        assert _cosine(grads["first_order"], grads["exact"]) >= (1 - (1.01 * expected_error) ** 2) ** 0.5


@pytest.mark.parametrize("steps", [1, 2])
def test_first_order_error_shrinks_linearly_with_alpha_on_a_conv_net_with_batchnorm(steps):
    """The relative error against the exact gradient (l = 1 and 2) is O(alpha): /10 per decade of alpha.

    This width-2 network on a batch of 3 is stiff (error ~ 200 alpha, ReLU kinks crossed above
    alpha ~ 1e-4), so the linear regime is checked at alpha = 1e-5 and 1e-6; the benchmark
    (benchmarks/bench_first_order_agreement.py) measures the agreement at the real alpha = 2.5e-4.
    """
    student, teacher, batch = _conv_problem()
    phi = _random_phi(student)
    errors = []
    for alpha in (1e-5, 1e-6):
        grads = _phi_gradients(student, teacher, batch, phi, alpha, steps=steps)
        errors.append(_relative_error(grads["first_order"], grads["exact"]))
        assert _cosine(grads["first_order"], grads["exact"]) > 1 - errors[-1] ** 2
    assert 8 < errors[0] / errors[1] < 12, errors
    assert errors[0] < 1e-2  # measured: 1.8e-3 (l = 1), 3.4e-3 (l = 2)


class _CountBackward(autograd.Function):
    """Identity whose backward increments a counter: one call per backward pass through the stem."""

    @staticmethod
    def forward(ctx, x, counter):
        ctx.counter = counter
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.counter["backward"] += 1
        return grad, None


def _count_passes(model):
    """Count forward passes and backward passes of ``model`` through hooks on its stem (conv1)."""
    counter = {"forward": 0, "backward": 0}

    def hook(module, inputs, output):
        counter["forward"] += 1
        return _CountBackward.apply(output, counter) if torch.is_grad_enabled() and output.requires_grad else output

    model.conv1.register_forward_hook(hook)
    return counter


@pytest.mark.parametrize("algorithm,student_passes", [("first_order", (1, 1)), ("efficient", (2, 3))])
def test_first_order_costs_the_passes_of_a_distillation_step(algorithm, student_passes):
    """(forward, backward) passes of the student: a distillation step takes (1, 1), and so does first_order;
    efficient adds a virtual forward and backward and a second backward at theta (L_REG alone)."""
    student, teacher, batch = _conv_problem()
    distilled, distill_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    counts, teacher_counts = _count_passes(student), _count_passes(teacher)
    distill_counts, distill_teacher_counts = _count_passes(distilled), _count_passes(distill_teacher)
    distillation_step(distilled, distill_teacher, *batch)
    MetaPriorLearner(student, teacher, _random_phi(student), alpha=ALPHA, algorithm=algorithm).step(*batch)
    assert (distill_counts["forward"], distill_counts["backward"]) == (1, 1)
    assert (counts["forward"], counts["backward"]) == student_passes
    assert teacher_counts == distill_teacher_counts == {"forward": 1, "backward": 0}
