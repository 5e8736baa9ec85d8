import os

import numpy as np
import pytest
import torch
from monai_ext.visualize import (
    GROUND_TRUTH_COLOUR,
    PREDICTION_COLOUR,
    render_overlay,
    save_overlay_grid,
    save_overlay_png,
    save_picture_grid,
)
from PIL import Image


def _scene(size=32):
    image = np.linspace(-1000.0, 400.0, size * size).reshape(size, size)  # CT-like range, not 0..1
    label = np.zeros((size, size), dtype=np.uint8)
    label[8:20, 8:20] = 1
    pred = np.zeros((size, size), dtype=bool)
    pred[12:24, 12:24] = True
    return image, label, pred


def test_colours_mark_ground_truth_and_prediction():
    image, label, pred = _scene()
    picture = np.asarray(render_overlay(image, mask=label, pred=pred, min_size=32, legend=False))
    assert picture.shape == (32, 32, 3)
    assert tuple(picture[8, 14]) == GROUND_TRUTH_COLOUR  # top edge of the label, outside the prediction
    assert tuple(picture[23, 18]) == PREDICTION_COLOUR  # bottom edge of the prediction
    inside = picture[16, 22].astype(int)  # inside the prediction only: tinted red, not replaced
    grey = np.asarray(render_overlay(image, min_size=32))[16, 22].astype(int)
    assert inside[0] > grey[0] and inside[1] < grey[1]
    assert tuple(picture[2, 2]) == tuple(np.asarray(render_overlay(image, min_size=32))[2, 2])


def test_image_range_is_rescaled_and_small_images_enlarged():
    image, _, _ = _scene(16)
    picture = np.asarray(render_overlay(torch.as_tensor(image)[None], min_size=64))
    assert picture.shape == (64, 64, 3)
    assert picture.min() == 0 and picture.max() == 255


def test_text_band_below_image(tmp_path):
    image, label, pred = _scene()
    long_report = "Bilateral pulmonary infection, two infected areas, upper left lung and upper right lung. " * 3
    plain = render_overlay(image, mask=label, pred=pred, min_size=64, legend=False)
    with_text = render_overlay(image, mask=label, pred=pred, text=long_report, min_size=64, legend=False)
    assert plain.size == (64, 64)
    assert with_text.width == 64 and with_text.height > 64 + 3 * 12  # wrapped over several lines
    band = np.asarray(with_text)[64:]
    assert (band > 200).any()  # light text drawn on the dark band


def test_save_overlay_png_atomic_and_no_overwrite(tmp_path):
    image, label, pred = _scene()
    path = tmp_path / "case.png"
    assert save_overlay_png(image, label, path, pred=pred, text="report") == os.fspath(path)
    with Image.open(path) as saved:
        assert saved.mode == "RGB" and saved.width == 256
    with pytest.raises(FileExistsError, match="case.png"):
        save_overlay_png(image, label, path)
    save_overlay_png(image, None, path, pred=pred, overwrite=True)
    assert os.listdir(tmp_path) == ["case.png"]
    with pytest.raises(TypeError, match="path"):
        save_overlay_png(image, label)


def test_multi_class_uses_one_colour_per_class():
    index = np.zeros((32, 32), dtype=np.int64)
    index[4:12, 4:12] = 1
    index[18:28, 18:28] = 2
    picture = np.asarray(render_overlay(np.zeros((32, 32)), mask=index, pred=index, min_size=32, legend=False))
    first, second = tuple(picture[4, 8]), tuple(picture[18, 22])
    assert first != second
    assert GROUND_TRUTH_COLOUR not in (first, second)


def test_bad_inputs_are_explained():
    image, label, _ = _scene()
    with pytest.raises(ValueError, match="mask has shape"):
        render_overlay(image, mask=label[:16])
    with pytest.raises(ValueError, match="non-integer"):
        render_overlay(image, pred=label * 0.5)
    with pytest.raises(ValueError, match="channel first"):
        render_overlay(np.zeros((2, 32, 32)))


def test_grid(tmp_path):
    image, label, pred = _scene()
    path = save_overlay_grid(
        [image] * 3, tmp_path / "grid.png", masks=[label] * 3, preds=[pred, None, pred], ncols=2, min_size=32
    )
    with Image.open(path) as grid:
        assert grid.width == 2 * 32 + 4 and grid.height > 2 * 32
    with pytest.raises(ValueError, match="2 masks for 3 images"):
        save_overlay_grid([image] * 3, tmp_path / "bad.png", masks=[label] * 2)


def test_picture_grid_places_written_pictures_in_rows(tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (30, 20), (255, 0, 0)).save(red)
    Image.new("RGB", (20, 40), (0, 0, 255)).save(blue)
    path = save_picture_grid([red, blue, blue], tmp_path / "pairs.png", ncols=2)
    with Image.open(path) as grid:
        assert grid.size == (2 * 30 + 4, 2 * 40 + 4)  # cells as large as the largest picture
        assert grid.getpixel((5, 5)) == (255, 0, 0) and grid.getpixel((30 + 4 + 5, 5)) == (0, 0, 255)
        assert grid.getpixel((5, 40 + 4 + 5)) == (0, 0, 255)
    with pytest.raises(FileExistsError):
        save_picture_grid([red], path)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        save_picture_grid([red, tmp_path / "missing.png"], tmp_path / "other.png")
