"""The optional `temperature` tensor of jointvae::sample_latent: a one-element tensor that replaces tau (read at
run time on CUDA, so a captured graph follows its refills). Same results as the float tau, forward and backward."""
import pytest
import torch

from jointvae_fast import ops

pytestmark = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops unavailable")
OP = torch.ops.jointvae.sample_latent.default


def _inputs(device="cpu", dtype=torch.float32, B=6, D=3, dims=(2, 5)):
    g = torch.Generator().manual_seed(4)
    K = sum(dims)
    mu, lv, lg = (torch.randn(B, n, generator=g, dtype=dtype) for n in (D, D, K))
    eps = torch.randn(B, D, generator=g, dtype=dtype)
    u = torch.rand(B, K, generator=g, dtype=dtype).clamp_(1e-6, 1 - 1e-6)
    return [t.to(device) for t in (mu, lv, lg, eps, u)], list(dims)


def _run(device, dtype, tau, temperature):
    (mu, lv, lg, eps, u), dims = _inputs(device, dtype)
    leaves = [t.requires_grad_() for t in (mu, lv, lg)]
    latent = OP(*leaves, dims, tau, True, eps, u, None, temperature)[0]
    w = torch.linspace(-1, 1, latent.numel(), dtype=dtype, device=device).reshape(latent.shape)
    return (latent, *torch.autograd.grad((latent * w).sum(), leaves))


def _devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() and ops.backend() == "cuda+cpu" else [])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", _devices())
def test_temperature_tensor_equals_float_tau_forward_and_backward(device, dtype):
    want = _run(device, dtype, 0.37, None)
    got = _run(device, dtype, 1.0, torch.tensor(0.37, dtype=dtype, device=device))  # tau=1.0 is ignored
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = _run(device, dtype, 0.37, torch.tensor(2.0, dtype=dtype, device=device))
    assert not torch.allclose(other[0], want[0])  # the tensor, not tau, decides


def test_temperature_tensor_is_checked():
    (mu, lv, lg, eps, u), dims = _inputs()
    for bad, what in ((torch.tensor([0.5, 0.5]), "one-element"), (torch.tensor(0.5, dtype=torch.float64), "Float"),
                      (torch.tensor(0.0), "tau"), (torch.tensor(float("nan")), "tau")):
        with pytest.raises(RuntimeError, match=what):
            OP(mu, lv, lg, dims, 1.0, True, eps, u, None, bad)


@pytest.mark.cuda
@pytest.mark.skipif(ops.backend() != "cuda+cpu", reason="CUDA ops not built")
def test_captured_graph_reads_the_refilled_temperature():
    """A graph captured with the temperature tensor replays with each new value: equal to eager at that tau."""
    (mu, lv, lg, eps, u), dims = _inputs("cuda")
    temp = torch.tensor(1.0, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        OP(mu, lv, lg, dims, 1.0, True, eps, u, None, temp)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = OP(mu, lv, lg, dims, 1.0, True, eps, u, None, temp)[0]
    for tau in (0.9, 0.5, 0.2):
        temp.fill_(tau)
        graph.replay()
        torch.testing.assert_close(out, OP(mu, lv, lg, dims, tau, True, eps, u, None)[0], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 3:5].sum(1), torch.ones(6, device="cuda"))  # a valid sample
