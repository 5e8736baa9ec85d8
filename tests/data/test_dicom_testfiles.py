"""pydicom's own test files (real CT, MR, RT dose, secondary captures; uncompressed, big-endian, RLE, JPEG baseline,
12-bit JPEG Extended, JPEG-LS, JPEG 2000), read by the checked DICOM reader: every image either reads to exactly the
pixels pydicom decodes, or is refused in one line that names the file (and, for a compressed transfer syntax that no
installed decoder reads, the transfer syntax and the ``dicom`` extra). Only the files on disk in the installed pydicom
are used; nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pydicom
import pydicom.data
import pytest
from monai_ext.data import CheckedLoadImage, ImageReadError, missing_dicom_decoders

TEST_FILES = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
DECODERS_INSTALLED = not missing_dicom_decoders()
# Same 64 x 64 MR slice as MR_small.dcm in other transfer syntaxes (pydicom's README.txt of its test files).
MR_SMALL_LOSSLESS = ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm"]
MR_SMALL_JPEG_LS = "MR_small_jpeg_ls_lossless.dcm"
JPEG_EXTENDED_12BIT = "JPEG-lossy.dcm"
JPEG_EXTENDED_12BIT_FIXED = "JPGExtended.dcm"


def on_disk(name: str) -> str:
    path = os.path.join(TEST_FILES, name)
    if not os.path.isfile(path):
        pytest.skip(f"{name} is not among the test files of the installed pydicom {pydicom.__version__}")
    return path


def image_files() -> list[str]:
    """The test files on disk that pydicom parses as DICOM and that hold pixel data."""
    if not os.path.isdir(TEST_FILES):
        return []
    names = []
    for name in sorted(os.listdir(TEST_FILES)):
        if not name.endswith(".dcm"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(os.path.join(TEST_FILES, name))
        except Exception:  # files without the DICM preamble are no images for the reader either
            continue
        if "PixelData" in ds:
            names.append(name)
    return names


def load(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the deliberately odd test files
        return CheckedLoadImage(channels=1)(path)


def reference_pixels(path: str) -> np.ndarray:
    """What pydicom itself decodes, rescaled, in the reader's (column, row) order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float32)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return (pixels * slope + intercept).T


@pytest.mark.skipif(not image_files(), reason="the installed pydicom ships no test files")
@pytest.mark.parametrize("name", image_files())
def test_each_image_reads_as_pydicom_decodes_it_or_is_refused_in_one_line(name):
    path = os.path.join(TEST_FILES, name)
    try:
        image = load(path)
    except ImageReadError as error:
        message = str(error)
        assert "\n" not in message and path in message
        syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.get("TransferSyntaxUID")
        if "Cannot decode pixel data" in message and syntax is not None:
            assert syntax.name in message and str(syntax) in message
            if syntax.is_compressed and not DECODERS_INSTALLED:
                assert "pip install 'monai-textseg[dicom]'" in message
        return
    assert image.shape[0] == 1
    np.testing.assert_array_equal(image[0].numpy(), reference_pixels(path))


@pytest.mark.parametrize("name", MR_SMALL_LOSSLESS + [MR_SMALL_JPEG_LS])
def test_lossless_transfer_syntaxes_give_the_uncompressed_pixels(name):
    path = on_disk(name)
    if name == MR_SMALL_JPEG_LS and not DECODERS_INSTALLED:
        pytest.skip("JPEG-LS needs the decoders of the 'dicom' extra: pip install -e '.[dicom]'")
    expected = load(on_disk("MR_small.dcm"))
    np.testing.assert_array_equal(load(path).numpy(), expected.numpy())


@pytest.mark.skipif(not DECODERS_INSTALLED, reason="needs the 'dicom' extra: pip install -e '.[dicom]'")
def test_12_bit_jpeg_extended_reads_with_the_dicom_extra():
    """JPGExtended.dcm is the repaired JPEG-lossy.dcm (pydicom's README.txt); the original's JPEG stream is malformed
    (its scan header), which every decoder refuses: it stays a one-line refusal naming the file and its syntax."""
    path = on_disk(JPEG_EXTENDED_12BIT_FIXED)
    image = load(path)
    assert tuple(image.shape) == (1, 256, 1024)
    assert float(image.max()) > 255 and float(image.max()) < 2**12  # 12-bit samples decoded
    np.testing.assert_array_equal(image[0].numpy(), reference_pixels(path))
    broken = on_disk(JPEG_EXTENDED_12BIT)
    with pytest.raises(ImageReadError) as refused:
        load(broken)
    message = str(refused.value)
    assert "\n" not in message and broken in message and "JPEG Extended" in message
    assert "corrupt or malformed" in message
    assert "pip install" not in message  # the decoders are there; installing them again would not help


def test_without_decoders_12_bit_jpeg_is_refused_naming_file_syntax_and_extra():
    """In a Python where the decoder packages cannot be imported (as without the extra) the reader explains itself."""
    path = on_disk(JPEG_EXTENDED_12BIT)
    blocked = "; ".join(f"sys.modules[{module!r}] = None" for module in ("pylibjpeg", "libjpeg", "openjpeg"))
    code = (
        f"import sys; {blocked}\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "from monai_ext.data import CheckedLoadImage, ImageReadError\n"
        f"try:\n    CheckedLoadImage(channels=1)({path!r})\n"
        "except ImageReadError as error:\n    print('REFUSED', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REFUSED")]
    assert result.returncode == 0 and len(lines) == 1, result.stderr[-2000:]
    message = lines[0]
    assert path in message and "JPEG Extended" in message and "1.2.840.10008.1.2.4.51" in message
    assert "pip install 'monai-textseg[dicom]'" in message and "pylibjpeg-libjpeg" in message
    assert "Traceback" not in result.stderr
