"""Where bf16 rounding enters a training step's gradient: each parameter's gradient under fp32 and under bf16
autocast (the decoder's last layer in bf16, as before 2026-12-03, and in float32 on its patch route, as now)
against the same step in float64, at the shipped Fashion-MNIST model on its test images, with the same noise.
For scale, the difference between the float64 gradients of two disjoint halves of the batch (the noise every
minibatch step has anyway).

    python benchmarks/precision_gradients.py [--images 256] [--seed 0] [--json PATH]

Needs Fashion-MNIST where the loader finds it (docs/datasets.md) and pretrained:fashion-mnist. Relative error
of a set of gradients = ||g - g64|| / ||g64|| over the set. The step is Eq. 7 at C_z = 4, C_c = 8 nats (the
preset's gammas), so all terms have a gradient.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe, one_line, write_json  # noqa: E402
from jointvae_fast import ops, pretrained  # noqa: E402
from jointvae_fast.data.idx import load_fashion_mnist  # noqa: E402
from jointvae_fast.layers import torch_layers  # noqa: E402
from jointvae_fast.objective import bernoulli_nll  # noqa: E402
from jointvae_fast.training.precision import autocast  # noqa: E402

C_CONT, C_DISC, GAMMA = 4.0, 8.0, 100.0


def step_gradients(model, x, noise, dtype, precision: str) -> dict[str, torch.Tensor]:
    """{parameter name: gradient (float64)} of Eq. 7 on x with the given noise, the model cast to dtype."""
    m = copy.deepcopy(model).to(dtype).train()
    x = x.to(dtype)
    with autocast(precision, x.device):
        mu, logvar, logits = m.encode(x)
    mu, logvar, logits = mu.to(dtype), logvar.to(dtype), logits.to(dtype)
    eps, u = (t.to(dtype) for t in noise)
    latent = ops.sample_latent(mu, logvar, logits, list(m.disc), m.temperature, noise=(eps, u))
    with autocast(precision, x.device):
        x_logits = m.decode(latent)
    kl_loss = ops.kl_capacity_loss(mu, logvar, logits, list(m.disc), C_CONT, C_DISC, GAMMA, GAMMA)[0]
    (bernoulli_nll(x, x_logits.to(dtype)) + kl_loss).backward()
    return {n: p.grad.double() for n, p in m.named_parameters()}


def relative_error(got: dict, want: dict, names) -> float:
    num = torch.cat([(got[n] - want[n]).flatten() for n in names]).norm()
    return (num / torch.cat([want[n].flatten() for n in names]).norm()).item()


def run(images: int = 256, seed: int = 0) -> dict:
    data = load_fashion_mnist(progress=False)
    x = data.test[:images].float().div(255)
    model, _ = pretrained.load("fashion-mnist")
    g = torch.Generator().manual_seed(seed)
    D, K = model.cont, sum(model.disc)
    noise = (torch.randn(images, D, generator=g, dtype=torch.float64),
             torch.rand(images, K, generator=g, dtype=torch.float64).clamp(1e-6, 1 - 1e-6))
    ref = step_gradients(model, x, noise, torch.float64, "fp32")
    arms = {"fp32": step_gradients(model, x, noise, torch.float32, "fp32"),
            "bf16, last layer bf16": step_gradients(torch_layers(copy.deepcopy(model)), x, noise, torch.float32,
                                                    "bf16"),
            "bf16, last layer float32": step_gradients(model, x, noise, torch.float32, "bf16")}
    half = images // 2
    halves = [step_gradients(model, x[s], tuple(t[s] for t in noise), torch.float64, "fp32")
              for s in (slice(0, half), slice(half, 2 * half))]
    names = list(ref)
    groups = {"encoder": [n for n in names if n.startswith(("img_to_features", "features_to_hidden", "to_posterior"))],
              "decoder": [n for n in names if n.startswith(("latent_to_features", "features_to_img"))], "all": names}
    rows = {arm: {**{n: relative_error(gr, ref, [n]) for n in names},
                  **{k: relative_error(gr, ref, v) for k, v in groups.items()}} for arm, gr in arms.items()}
    rows["batch half vs half (float64)"] = {k: relative_error(halves[0], halves[1], v) for k, v in groups.items()}
    return {"images": images, "seed": seed, "parameters": names, "errors": rows}


def format_table(result: dict) -> str:
    arms = list(result["errors"])
    keys = result["parameters"] + ["encoder", "decoder", "all"]
    lines = ["parameter".ljust(30) + "".join(f"{a:>30}" for a in arms)]
    for k in keys:
        lines.append(k.ljust(30) + "".join(f"{result['errors'][a][k]:>30.2e}" if k in result["errors"][a]
                                           else f"{'':>30}" for a in arms))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    machine = describe()
    print(f"# {one_line(machine)}")
    result = run(args.images, args.seed)
    print(format_table(result))
    write_json(args.json, {"machine": machine, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
