"""The fast training step changes how the step runs, never what it computes.

Eager path (the definition this file checks against): the plain TrainStep math --
optimizer.zero_grad(); out = model(x); terms = Objective(x, out, step); terms.total.backward();
optimizer.step() -- with the composite (pure-PyTorch) latent ops, torch.optim.Adam with its default
implementation, the model in the default NCHW layout and no allocator setting.
Fast path: TrainStep and make_optimizer with their defaults (fused ops, fused Adam, channels_last on
the CPU; a CUDA graph on CUDA). Both get the same initial weights, the same
batches and the same explicit noise (eps, u) each step, so their loss trajectories must agree to
float32 rounding. The noise sits in two device buffers refilled before each step, outside the step, so
a captured graph reads each step's noise when it replays (a stale draw would show).
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

from jointvae_fast import ops
from jointvae_fast.model import JointVAE
from jointvae_fast.objective import Capacity, Objective
from jointvae_fast.training.allocator import tune_cpu_allocator
from jointvae_fast.training.cuda_graph import CapturedStep, StepParts
from jointvae_fast.training.step import TrainStep, make_optimizer

SIZE, CONT, DISC, BATCH = 32, 4, (3, 5), 8
STEPS = 200


class RecordingVAE(JointVAE):
    """JointVAE that copies each latent it draws into the device buffer `seen` (inside a captured graph too),
    so a test can compare the samples of graph replays with an eager run's."""

    seen = None

    def latent(self, mu, logvar, logits, generator=None):
        return self._remember(super().latent(mu, logvar, logits, generator))

    def _remember(self, z):
        if self.seen is None:
            self.seen = torch.empty_like(z)
        self.seen.copy_(z.detach())
        return z


class BufferFedVAE(RecordingVAE):
    """RecordingVAE whose latent sample reads its noise from the device buffers `eps`, `u`, refilled by `feed`
    before each step, outside any captured graph."""

    def __init__(self, *args, sample, **kw):
        super().__init__(*args, **kw)
        self._sample = sample
        self.eps = self.u = None

    def feed(self, eps, u):
        if self.eps is None:
            dev = next(self.parameters()).device
            self.eps, self.u = torch.empty(eps.shape, device=dev), torch.empty(u.shape, device=dev)
        self.eps.copy_(eps)
        self.u.copy_(u)

    def latent(self, mu, logvar, logits, generator=None):
        return self._remember(self._sample(mu, logvar, logits, self.disc, self.temperature, training=self.training,
                                           noise=(self.eps, self.u)))


def _noise(steps, seed=7):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        eps = torch.randn(BATCH, CONT, generator=g)
        u = torch.rand(BATCH, sum(DISC), generator=g).clamp_(2.0**-24, 1 - 2.0**-24)
        out.append((eps, u))
    return out


def _batches(steps, seed=3):
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(16, 1, SIZE, SIZE)  # learnable images: one bright rectangle each
    corners = torch.randint(0, SIZE // 2, (16, 2), generator=g)
    sides = torch.randint(4, SIZE // 2, (16, 2), generator=g)
    for img, (r, c), (h, w) in zip(base, corners.tolist(), sides.tolist()):
        img[:, r : r + h, c : c + w] = 1.0
    idx = torch.randint(0, 16, (steps, BATCH), generator=g)
    return [base[i] for i in idx]


def _objective():
    """The paper's mnist schedule (Appendix C): C rises from 0 to 5 nats over 25000 steps, gamma 30."""
    return Objective(DISC, Capacity(0.0, 5.0, 25000, 30.0), Capacity(0.0, 5.0, 25000, 30.0))


def _ramp_objective():
    """A short ramp (C_z rises 0.5 nats per step, always above KL_z, so |KL_z - C_z| keeps its sign): a graph
    replaying a stale C_z would be off by 15 in the capacity loss at the next step already."""
    return Objective(DISC, Capacity(50.0, 60.0, 20, 30.0), Capacity(0.0, 5.0, 25000, 30.0))


def _temperatures(steps):
    """tau annealed 1.0 -> 0.3, a new value every step (a graph replaying a stale tau would show in the samples)."""
    return [1.0 * 0.3 ** (k / max(steps - 1, 1)) for k in range(steps)]


def _model(sample, device="cpu"):
    torch.manual_seed(0)
    return BufferFedVAE((1, SIZE, SIZE), CONT, DISC, sample=sample).to(device)


def _record(terms, model):
    return torch.stack([terms.total.detach(), terms.recon.detach(), terms.capacity_loss.detach()]), model.seen.clone()


def eager_trajectory(batches, noise, monkeypatch, lr=5e-4, device="cpu", objective=None, temps=None):
    """-> (loss terms [steps, 3] float64, latents drawn [steps, B, W], model) of the eager definition."""
    model = _model(ops.composite_sample_latent, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=False, fused=False)
    objective = objective or _objective()
    losses, seen = [], []
    with monkeypatch.context() as m:
        m.setattr(ops, "kl_capacity_loss", ops.composite_kl_capacity_loss)
        for step, x in enumerate(batches, start=1):
            x = x.to(device)
            model.feed(*noise[step - 1])
            if temps is not None:
                model.temperature = temps[step - 1]
            optimizer.zero_grad()
            terms = objective(x, model(x), step)
            terms.total.backward()
            optimizer.step()
            loss, z = _record(terms, model)
            losses.append(loss)
            seen.append(z)
    return torch.stack(losses).cpu().double(), torch.stack(seen).cpu(), model


def fast_trajectory(batches, noise, lr=5e-4, device="cpu", objective=None, temps=None):
    """-> (loss terms, latents drawn, model, TrainStep, step modes) of TrainStep with its defaults."""
    model = _model(ops.sample_latent, device)
    optimizer = make_optimizer(model, lr)
    step_fn = TrainStep(model, optimizer, objective or _objective())
    losses, seen, modes = [], [], []
    for step, x in enumerate(batches, start=1):
        model.feed(*noise[step - 1])
        if temps is not None:
            model.temperature = temps[step - 1]
        loss, z = _record(step_fn(x.to(device), step), model)
        losses.append(loss)
        seen.append(z)
        modes.append(step_fn.step_mode)
    return torch.stack(losses).cpu().double(), torch.stack(seen).cpu(), model, step_fn, modes


def test_fast_path_follows_eager_trajectory_cpu(monkeypatch):
    """200 steps at the paper's mnist settings (lr 5e-4): loss terms agree to float32 rounding.

    (|KL - C| makes the dynamics sensitive where KL crosses C; at these settings it never does, and the
    rounding differences of the convolution layout and the fused kernels stay ~1e-7 relative.)
    """
    batches, noise = _batches(STEPS), _noise(STEPS)
    eager, _, eager_model = eager_trajectory(batches, noise, monkeypatch)
    fast, _, fast_model, step_fn, modes = fast_trajectory(batches, noise)
    assert set(modes) == {"eager (cpu)"}

    # the fast path really is the fast path
    assert step_fn.channels_last
    assert fast_model.img_to_features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(g["fused"] for g in step_fn.optimizer.param_groups)

    # training moved far: a comparison that could fail
    assert (eager[0, 0] - eager[-1, 0]).abs() > 0.05 * eager[0, 0].abs()
    torch.testing.assert_close(fast[:, :2], eager[:, :2], rtol=1e-5, atol=0)  # total, recon
    torch.testing.assert_close(fast[:, 2], eager[:, 2], rtol=1e-4, atol=1e-3)  # gamma * |KL - C|, gamma = 30
    # weights: Adam's near-zero second moments let single elements wander by ~lr; compare each tensor's norm
    for (name, pe), pf in zip(eager_model.named_parameters(), fast_model.parameters()):
        assert (pf.detach() - pe.detach()).norm() <= 1e-3 * pe.detach().norm(), name


def test_make_optimizer_fused_matches_default_adam():
    torch.manual_seed(1)
    a = torch.nn.Linear(20, 7)
    b = torch.nn.Linear(20, 7)
    b.load_state_dict(a.state_dict())
    oa = torch.optim.Adam(a.parameters(), lr=1e-2, foreach=False)
    ob = make_optimizer(b, 1e-2)
    assert ob.param_groups[0]["fused"] and ob.defaults["betas"] == (0.9, 0.999) and ob.defaults["eps"] == 1e-8
    x = torch.randn(32, 20)
    for _ in range(50):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6)
    assert (a.weight - torch.nn.Linear(20, 7).weight).abs().max() > 0  # it trained


def test_make_optimizer_rejects_bad_lr():
    with pytest.raises(ValueError, match="lr"):
        make_optimizer(torch.nn.Linear(2, 2), 0.0)


def test_loss_at_device_scalar_capacities_equals_objective_values_and_gradients():
    """The CUDA-graph step's loss (capacities as device scalars) is Eq. 7 exactly as Objective computes it."""
    torch.manual_seed(2)
    objective = _objective()
    x = torch.rand(BATCH, 1, SIZE, SIZE)
    for step in (1, 37, 500):  # below, inside and above the capacity ramp
        leaves = [torch.randn(BATCH, CONT, requires_grad=True), torch.randn(BATCH, CONT, requires_grad=True),
                  torch.randn(BATCH, sum(DISC), requires_grad=True),
                  torch.randn(BATCH, 1, SIZE, SIZE, requires_grad=True)]
        out = SimpleNamespace(mu=leaves[0], logvar=leaves[1], logits=leaves[2], x_logits=leaves[3])
        ref = objective(x, out, step)
        g_ref = torch.autograd.grad(ref.total, leaves)
        c_cont, c_disc = torch.tensor(ref.c_cont), torch.tensor(ref.c_disc)
        total, recon, cap, kl_cont, kl_disc = objective.at_capacities(x, out, c_cont, c_disc)[:5]
        g = torch.autograd.grad(total, leaves)
        for a, b in ((total, ref.total), (recon, ref.recon), (cap, ref.capacity_loss), (kl_cont, ref.kl_cont),
                     (kl_disc, ref.kl_disc)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        for a, b in zip(g, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_channels_last_conversion_keeps_parameters_and_optimizer_state():
    torch.manual_seed(0)
    model = JointVAE((1, SIZE, SIZE), CONT, DISC)
    optimizer = make_optimizer(model, 1e-3)
    x = torch.rand(BATCH, 1, SIZE, SIZE)
    optimizer.zero_grad()
    _objective()(x, model(x), 1).total.backward()
    optimizer.step()  # state (exp_avg, exp_avg_sq) now exists, NCHW
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = [id(p) for p in model.parameters()]
    step_fn = TrainStep(model, optimizer, _objective())
    assert [id(p) for p in model.parameters()] == ids
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for p in model.parameters():
        for v in optimizer.state[p].values():
            if v.shape == p.shape:
                assert v.stride() == p.stride()
    assert step_fn.mode == "eager"


def test_options_are_checked():
    model = JointVAE((1, SIZE, SIZE), CONT, DISC)
    with pytest.raises(ValueError, match="cuda_graph"):
        TrainStep(model, make_optimizer(model, 1e-3), _objective(), cuda_graph=True)
    with pytest.raises(ValueError, match="warmup"):
        TrainStep(model, make_optimizer(model, 1e-3), _objective(), warmup=0)


def test_allocator_setting_is_idempotent():
    first = tune_cpu_allocator()
    assert tune_cpu_allocator() is first


def test_capture_failure_warns_once_runs_eagerly_and_says_why(monkeypatch):
    """A failed capture (forced here, on the CPU) warns once, and every later step runs eagerly with the
    failure as its recorded step mode; the annealed temperature is not part of the graph's key."""
    torch.manual_seed(0)
    model = JointVAE((1, SIZE, SIZE), CONT, DISC)
    step_fn = TrainStep(model, make_optimizer(model, 1e-3), _objective())
    assert step_fn.step_mode == "eager (cpu)" and not step_fn.cuda_graph
    monkeypatch.setattr(CapturedStep, "_side_stream_step", lambda self, x, step: self.parts.eager(x, step))

    def fail(self, x):
        raise RuntimeError("forced failure")

    monkeypatch.setattr(CapturedStep, "_record", fail)
    parts = StepParts(model, step_fn.optimizer, step_fn.objective, None, step_fn.device, step_fn.eager,
                      step_fn.run_forward)
    step_fn._graph = CapturedStep(parts, warmup=2)
    x = _batches(1)[0]
    key = step_fn._graph._key(x)
    model.temperature = 0.3
    assert step_fn._graph._key(x) == key  # annealing keeps the graph
    before = [p.detach().clone() for p in model.parameters()]
    modes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step, x in enumerate(_batches(5), start=1):
            assert torch.isfinite(step_fn(x, step).total)
            modes.append(step_fn.step_mode)
    assert modes[:2] == ["eager (warm-up, CUDA graph capture after 2 steps)"] * 2
    assert modes[2:] == ["eager (CUDA graph capture failed: forced failure)"] * 3
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == [
        "jointvae_fast: CUDA graph capture failed: forced failure; training continues with eager steps"]
    assert step_fn.graph_failure == "CUDA graph capture failed: forced failure"
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))  # it trained


def test_step_mode_says_why_eager():
    torch.manual_seed(0)
    model = JointVAE((1, SIZE, SIZE), CONT, DISC)
    assert TrainStep(model, make_optimizer(model, 1e-3), _objective()).step_mode == "eager (cpu)"
    assert TrainStep(model, make_optimizer(model, 1e-3), _objective(), cuda_graph=False).step_mode == "eager (cpu)"


@pytest.mark.cuda
def test_cuda_graph_step_follows_eager_trajectory(monkeypatch):
    """Graph replays vs the eager definition with the same buffer-fed noise, under a short capacity ramp and a
    temperature annealed every step: the same loss terms and the same samples at every step (a replay that
    kept a stale capacity, temperature or noise draw would differ at once)."""
    steps = 30
    batches, noise, temps = _batches(steps), _noise(steps), _temperatures(steps)
    eager, eager_z, _ = eager_trajectory(batches, noise, monkeypatch, device="cuda", objective=_ramp_objective(),
                                         temps=temps)
    fast, fast_z, _, step_fn, modes = fast_trajectory(batches, noise, device="cuda", objective=_ramp_objective(),
                                                      temps=temps)
    assert modes[: step_fn.warmup] == [f"eager (warm-up, CUDA graph capture after {step_fn.warmup} steps)"] * \
        step_fn.warmup
    assert modes[step_fn.warmup:] == ["cuda-graph"] * (steps - step_fn.warmup), step_fn.graph_failure
    torch.testing.assert_close(fast_z, eager_z, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast, eager, rtol=2e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_draws_fresh_noise_from_the_generator(precision):
    """Generator-drawn noise: the graphed steps equal eager fused steps started from the same generator state,
    sample for sample, under the capacity ramp and the annealed temperature; with bf16 the autocast region is
    captured with the forward (the same bf16 kernels replayed: float32 rounding, cuDNN's summation order
    aside, hence the looser bound)."""
    steps = 12
    temps = _temperatures(steps)

    def run(cuda_graph):
        torch.manual_seed(0)
        model = RecordingVAE((1, SIZE, SIZE), CONT, DISC).cuda()
        gen = torch.Generator(device="cuda").manual_seed(5)
        step_fn = TrainStep(model, make_optimizer(model, 1e-3), _ramp_objective(), generator=gen,
                            cuda_graph=cuda_graph, precision=precision)
        losses, seen = [], []
        for step, x in enumerate(_batches(steps), start=1):
            model.temperature = temps[step - 1]
            loss, z = _record(step_fn(x.cuda(), step), model)
            losses.append(loss)
            seen.append(z)
        return torch.stack(losses), torch.stack(seen), step_fn.step_mode, gen.get_offset()

    eager, eager_z, m0, o0 = run(False)
    graph, graph_z, m1, o1 = run(True)
    assert (m0, m1) == ("eager (cuda_graph=False)", "cuda-graph")
    assert o0 == o1  # the same draws were reserved
    tol = {"fp32": (1e-4, 1e-4, 2e-4, 1e-5), "bf16": (1e-2, 1e-2, 1e-2, 1e-3)}[precision]
    torch.testing.assert_close(graph_z, eager_z, rtol=tol[0], atol=tol[1])
    torch.testing.assert_close(graph, eager, rtol=tol[2], atol=tol[3])


@pytest.mark.cuda
@pytest.mark.parametrize("tc_on", ["joint", "continuous"])
def test_cuda_graph_carries_the_total_correlation_term(tc_on):
    """tc_weight > 0: the captured step's total and TC diagnostics (a function of the sampled latent) equal those
    of eager fused steps started from the same generator state, step for step."""
    steps = 10

    def run(cuda_graph):
        torch.manual_seed(0)
        model = JointVAE((1, SIZE, SIZE), CONT, DISC).cuda()
        gen = torch.Generator(device="cuda").manual_seed(5)
        objective = Objective(DISC, Capacity(0.0, 5.0, 25000, 30.0), Capacity(0.0, 5.0, 25000, 30.0),
                              tc_weight=3.0, tc_on=tc_on, dataset_size=1000)
        step_fn = TrainStep(model, make_optimizer(model, 1e-3), objective, generator=gen, cuda_graph=cuda_graph)
        rows = []
        for step, x in enumerate(_batches(steps), start=1):
            terms = step_fn(x.cuda(), step)
            rows.append(torch.cat([terms.total.detach().reshape(1), terms.tc_terms]).cpu())
        return torch.stack(rows), step_fn.step_mode

    (eager, m0), (graph, m1) = run(False), run(True)
    assert (m0, m1) == ("eager (cuda_graph=False)", "cuda-graph")
    assert eager.shape == (steps, 4) and torch.isfinite(eager).all()
    torch.testing.assert_close(graph, eager, rtol=2e-4, atol=1e-5)
