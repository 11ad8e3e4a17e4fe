"""benchmarks/precision_gradients.py measures what it says: at the shipped Fashion-MNIST model, the fp32 step's
gradients agree with float64 to float32 rounding, the bf16 steps' do not, and every arm has every parameter."""
import pytest

from jointvae_fast.data.idx import load_fashion_mnist


def _have_fashion_mnist() -> bool:
    try:
        load_fashion_mnist(download=False, progress=False)
        return True
    except Exception:  # noqa: BLE001 -- any reason it cannot load: the test does not apply
        return False


@pytest.mark.skipif(not _have_fashion_mnist(), reason="Fashion-MNIST not installed")
def test_fp32_matches_float64_and_bf16_does_not():
    from benchmarks import precision_gradients

    result = precision_gradients.run(images=32, seed=0)
    errors = result["errors"]
    assert set(errors) == {"fp32", "bf16, last layer bf16", "bf16, last layer float32",
                           "batch half vs half (float64)"}
    for arm in ("fp32", "bf16, last layer bf16", "bf16, last layer float32"):
        assert set(result["parameters"]) <= set(errors[arm])
    assert errors["fp32"]["all"] < 1e-4
    assert errors["bf16, last layer float32"]["all"] > 1e-3 and errors["bf16, last layer bf16"]["all"] > 1e-3
    assert errors["batch half vs half (float64)"]["all"] > errors["fp32"]["all"]
    assert "encoder" in precision_gradients.format_table(result)
