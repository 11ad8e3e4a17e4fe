"""An Explorer from a model source (run dir, checkpoint, the paper's model folder, pretrained:NAME), with
the test split of its dataset when that can be loaded, and KL per latent from the best available source
(jointvae_fast.analysis.latent_kl)."""
from __future__ import annotations

from ..analysis.latent_kl import KL_IMAGES, TestImages, kl_for, test_images
from ..analysis.report import INACTIVE_KL
from ..analysis.sources import load_source
from .session import Explorer


def build_explorer(source_text: str, dataset_name: str | None = None, data_dir=None, use_dataset: bool = True,
                   dataset=None, kl_images: int = KL_IMAGES, inactive_kl: float = INACTIVE_KL,
                   device: str = "cpu") -> Explorer:
    """Load the source (EvaluationError for a bad one) and everything the page shows about it."""
    source = load_source(source_text)
    model = source.model.to(device).eval()
    test = test_images(source, model, dataset_name, data_dir, dataset) if use_dataset else \
        TestImages(None, None, "test images are turned off (--no-dataset)")
    kl = kl_for(source, model, test, kl_images)
    step = f", step {source.step}" if source.step is not None else ""
    description = f"{source_text} ({source.kind}{step}; dataset {source.dataset or 'not recorded'})"
    return Explorer(model, kl, test, description, inactive_kl)
