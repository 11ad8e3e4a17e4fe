"""An Explorer from a model source (run dir, checkpoint, the paper's model folder, pretrained:NAME), with
the test split of its dataset when that can be loaded, and KL per latent from the best available source."""
from __future__ import annotations

from pathlib import Path

from ..analysis.report import INACTIVE_KL
from ..analysis.sources import EvaluationError, Source, load_source
from ..analysis.split import eval_split, load_named_dataset
from . import kl as klmod
from .session import Explorer, TestImages

KL_IMAGES = 1000


def test_images(source: Source, model, name: str | None, data_dir, use_dataset: bool, dataset=None) -> TestImages:
    """The test split to pick images from, or why there is none. `dataset`: an already loaded dataset object."""
    if not use_dataset:
        return TestImages(None, None, "test images are turned off (--no-dataset)")
    name = name or source.dataset
    if dataset is None:
        if name is None:
            return TestImages(None, None, "the source does not record its dataset (give --dataset NAME)")
        try:
            dataset = load_named_dataset(name, data_dir or source.data_dir, source.data_options)
        except (ValueError, OSError) as e:  # not found, corrupt, unknown name: the page says why
            return TestImages(None, name, f"dataset {name} could not be loaded: {e}")
    try:
        split = eval_split(dataset, name)
    except EvaluationError as e:
        return TestImages(None, name, str(e))
    if tuple(split.images.shape[1:]) != tuple(model.img_size):
        return TestImages(None, name, f"dataset {name} has images of size {tuple(split.images.shape[1:])}, "
                                      f"the model takes {tuple(model.img_size)}")
    loaded = getattr(dataset, "name", None) or name
    if name is not None and loaded != name:
        return TestImages(split.images, loaded, f"{loaded} test images stand in for {name}, which was not found",
                          stand_in=True)
    return TestImages(split.images, loaded, f"test split of {loaded}")


def kl_for(source: Source, model, test: TestImages, limit: int = KL_IMAGES) -> klmod.KL:
    """KL per latent from the first source that applies (see jointvae_fast.explore.kl)."""
    if test.images is not None and not test.stand_in:
        return klmod.from_images(model, test.images, test.dataset, limit)
    recorded = {"pretrained": source.path / "metrics.json", "run": Path(source.path) / "eval" / "metrics.json"}
    found = klmod.from_metrics(model, recorded[source.kind], source.step) if source.kind in recorded else None
    return found or klmod.from_log(model, source.log_path) or klmod.from_meta(model, source.meta) \
        or klmod.from_prior(model)


def build_explorer(source_text: str, dataset_name: str | None = None, data_dir=None, use_dataset: bool = True,
                   dataset=None, kl_images: int = KL_IMAGES, inactive_kl: float = INACTIVE_KL,
                   device: str = "cpu") -> Explorer:
    """Load the source (EvaluationError for a bad one) and everything the page shows about it."""
    source = load_source(source_text)
    model = source.model.to(device).eval()
    test = test_images(source, model, dataset_name, data_dir, use_dataset, dataset)
    kl = kl_for(source, model, test, kl_images)
    step = f", step {source.step}" if source.step is not None else ""
    description = f"{source_text} ({source.kind}{step}; dataset {source.dataset or 'not recorded'})"
    return Explorer(model, kl, test, description, inactive_kl)
