"""Shared pytest configuration: hypothesis profiles and the `cuda` marker."""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    derandomize=True,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(  # benchmarks/gpu_check.sh: the tests under compute-sanitizer (slow kernels)
    "quick",
    deadline=None,
    derandomize=True,
    max_examples=4,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _cuda_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_sessionstart(session):
    """Load (on a fresh checkout: build, about a minute) the compiled ops before any test runs, so that the
    build's progress lines land here and not in the captured output of whichever test first needs the ops
    (tests that check a command's stderr line by line failed on a checkout's first run)."""
    try:
        from jointvae_fast import ops
    except ImportError:
        return
    ops.backend()


def pytest_collection_modifyitems(config, items):
    if _cuda_visible():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU visible")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op torch thread per test: the tensors here are tiny, and on a small or shared machine
    OpenMP's spinning barriers made two-thread steps up to ~40x slower. Restored afterwards."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
