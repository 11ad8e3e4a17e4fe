"""Image grids: layout, quantisation, round trip through a PNG file, input checks."""
import numpy as np
import pytest
import torch
from PIL import Image

from jointvae_fast.grids.images import image_grid, save_image_grid


def test_grid_layout_and_values():
    # image i is constant i/10; 5 images, 3 per row -> 2 rows, last row has 2 images + padding
    x = torch.arange(5, dtype=torch.float32).div(10).view(5, 1, 1, 1).expand(5, 1, 4, 6)
    g = image_grid(x, nrow=3, padding=1, pad_value=1.0)
    assert g.shape == (2 * (4 + 1) + 1, 3 * (6 + 1) + 1, 1)
    assert g.dtype == np.uint8
    for i in range(5):
        r, k = divmod(i, 3)
        block = g[1 + r * 5 : 1 + r * 5 + 4, 1 + k * 7 : 1 + k * 7 + 6, 0]
        assert (block == round(255 * i / 10)).all()
    # padding rows/columns and the empty 6th slot are pad_value
    assert (g[0] == 255).all() and (g[:, 0] == 255).all()
    assert (g[6:10, 15:21] == 255).all()


def test_save_round_trip_gray_and_rgb(tmp_path):
    gen = torch.Generator().manual_seed(0)
    for c in (1, 3):
        x = torch.rand(7, c, 8, 8, generator=gen)
        p = save_image_grid(x, tmp_path / f"sub/g{c}.png", nrow=4, padding=2)
        back = np.asarray(Image.open(p))
        expect = image_grid(x, nrow=4, padding=2)
        assert back.shape[:2] == expect.shape[:2]
        np.testing.assert_array_equal(back.reshape(expect.shape), expect)
        # pixel (2, 2) is image 0's top-left
        assert abs(int(expect[2, 2, 0]) - round(255 * x[0, 0, 0, 0].item())) == 0


def test_uint8_input_matches_float():
    x = torch.randint(0, 256, (3, 1, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(image_grid(x), image_grid(x.float() / 255))


@pytest.mark.parametrize(
    "bad, exc",
    [
        (torch.zeros(2, 8, 8), ValueError),
        (torch.zeros(2, 2, 8, 8), ValueError),
        (torch.full((2, 1, 8, 8), 1.5), ValueError),
        (torch.full((2, 1, 8, 8), float("nan")), ValueError),
        (torch.zeros(2, 1, 8, 8, dtype=torch.int32), TypeError),
        ([[0.0]], TypeError),
    ],
)
def test_bad_images_raise(bad, exc):
    with pytest.raises(exc):
        image_grid(bad)


def test_bad_arguments_raise(tmp_path):
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="nrow"):
        image_grid(x, nrow=0)
    with pytest.raises(ValueError, match="padding"):
        image_grid(x, padding=-1)
    with pytest.raises(ValueError, match="path"):
        save_image_grid(x, tmp_path / "grid.notanimage")
