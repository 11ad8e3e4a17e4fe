"""The fused ops' size limits: one statement in jointvae_fast.ops.limits, equal to the C++ sources, enforced
alike by the compiled op, the composite path, the model and the configuration check."""
import re
from pathlib import Path

import pytest
import torch

from jointvae_fast import ops
from jointvae_fast.errors import UserInputError
from jointvae_fast.model import JointVAE
from jointvae_fast.ops.limits import MAX_CLASSES, MAX_DISC_VARS, check_latent_limits
from jointvae_fast.training.config import resolve_config

KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def test_limits_match_the_cpp_sources():
    math_h = (KERNELS / "include" / "jointvae" / "latent_math.h").read_text()
    checks_h = (KERNELS / "torch" / "checks.h").read_text()
    assert int(re.search(r"constexpr int kMaxDiscVars = (\d+);", math_h).group(1)) == MAX_DISC_VARS
    assert int(re.search(r"dims\[i\] <= \(int64_t\(1\) << (\d+)\)", checks_h).group(1)) == MAX_CLASSES.bit_length() - 1


def _latents(v: int):
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g), torch.randn(3, 2 * v, generator=g)


@pytest.mark.parametrize("fn", [ops.kl_capacity_loss, ops.composite_kl_capacity_loss], ids=["dispatch", "composite"])
def test_every_path_accepts_64_and_refuses_65_variables(fn):
    mu, logvar, logits = _latents(MAX_DISC_VARS)
    fn(mu, logvar, logits, [2] * MAX_DISC_VARS, 0.0, 0.0, 1.0, 1.0)
    mu, logvar, logits = _latents(MAX_DISC_VARS + 1)
    with pytest.raises(ValueError, match=f"at most {MAX_DISC_VARS} discrete variables"):
        fn(mu, logvar, logits, [2] * (MAX_DISC_VARS + 1), 0.0, 0.0, 1.0, 1.0)


@pytest.mark.skipif(ops.backend() == "composite", reason="the compiled ops are not built")
def test_the_compiled_op_itself_refuses_65_variables():
    mu, logvar, logits = _latents(MAX_DISC_VARS + 1)
    with pytest.raises(RuntimeError, match=f"at most {MAX_DISC_VARS} discrete variables"):
        torch.ops.jointvae.kl_capacity_loss(mu, logvar, logits, [2] * (MAX_DISC_VARS + 1), 0.0, 0.0, 1.0, 1.0)


def test_class_count_limit_on_the_python_path():
    with pytest.raises(ValueError, match=f"2..{MAX_CLASSES} classes"):
        ops.composite_sample_latent(torch.zeros(1, 0), torch.zeros(1, 0), torch.zeros(1, 0), [MAX_CLASSES + 1], 1.0)


@pytest.mark.parametrize("disc", [[2] * (MAX_DISC_VARS + 1), [MAX_CLASSES + 1]], ids=["65-variables", "2^24+1-classes"])
def test_configuration_and_model_refuse_what_the_ops_refuse(disc):
    with pytest.raises(UserInputError):
        check_latent_limits(disc)
    with pytest.raises(UserInputError):
        resolve_config(("test", {"dataset": "mnist", "disc": disc}))
    with pytest.raises(UserInputError):
        JointVAE((1, 32, 32), 2, disc)
    check_latent_limits([2] * MAX_DISC_VARS)
    check_latent_limits([MAX_CLASSES])
