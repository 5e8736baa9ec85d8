import numpy as np
import torch
from ignite.engine import Engine
from monai_ext.handlers import OverlayWriter
from PIL import Image


def _engine_with(image: torch.Tensor) -> Engine:
    label = torch.zeros(1, 32, 32)
    label[:, 8:20, 8:20] = 1
    engine = Engine(lambda engine, batch: [{"image": image, "label": label, "pred": label.clone()}])
    engine.state.batch = [{"name": "case_1", "text": "Nodule in the upper left lung."}]
    engine.state.iteration = 1
    return engine


def _written(tmp_path, image: torch.Tensor) -> np.ndarray:
    engine = _engine_with(image)
    engine.state.output = engine._process_function(engine, None)
    OverlayWriter(str(tmp_path))(engine)
    with Image.open(tmp_path / "case_1.png") as picture:
        return np.asarray(picture.convert("RGB"))


def test_image_with_hint_channels_is_drawn_from_its_first_channel(tmp_path):
    rng = np.random.default_rng(0)
    first = torch.as_tensor(rng.random((1, 32, 32)), dtype=torch.float32)
    hints = torch.zeros(3, 32, 32)
    hints[0, :16] = 1.0
    with_hints = _written(tmp_path / "hints", torch.cat([first, hints]))
    alone = _written(tmp_path / "alone", first)
    np.testing.assert_array_equal(with_hints, alone)


def test_grayscale_and_rgb_inputs_are_drawn_whole(tmp_path):
    rgb = torch.zeros(3, 32, 32)
    rgb[0] = 1.0  # red everywhere
    picture = _written(tmp_path, rgb)
    corner = picture[1, 1]
    assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60
