"""jointvae_fast: Joint-VAE (Dupont 2018) with fused CUDA/CPU kernels.

The public API, importable from here (each name is imported on first use, so
`import jointvae_fast` stays cheap; the compiled ops are loaded, or built
where no prebuilt library fits, on the first op call, never at import):

    JointVAE                      the network (model.py)
    Capacity, Objective           Eq. 7 with its capacity schedules (objective.py)
    TrainStep, make_optimizer     one optimisation step and the paper's Adam (training/step.py)
    load_model, load_checkpoint   our checkpoints (store/checkpoint.py)
    import_paper_checkpoint       a checkpoint of the paper's published code (paper_checkpoints.py)
    load_dataset                  the paper's datasets as uint8 tensors (data/)
    sample_latent, kl_capacity_loss   the two fused ops (ops/)

Layout: docs/design.md.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "JointVAE": "model",
    "Capacity": "objective",
    "Objective": "objective",
    "TrainStep": "training.step",
    "make_optimizer": "training.step",
    "load_model": "store.checkpoint",
    "load_checkpoint": "store.checkpoint",
    "import_paper_checkpoint": "paper_checkpoints",
    "load_dataset": "data",
    "sample_latent": "ops",
    "kl_capacity_loss": "ops",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jointvae_fast' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
