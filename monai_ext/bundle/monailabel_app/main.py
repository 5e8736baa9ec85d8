"""MONAI Label app serving the monai-textseg bundles (TGC-Net, VLSA-Net) with MONAI Label 0.8.5.

:func:`monai_ext.bundle.monailabel.prepare_app_bundle` writes this file as ``<app>/main.py`` and the bundles into
``<app>/model/<name>``; start it with ``monailabel start_server --app <app> --studies <images> --conf models <name>``
(several names separated by commas, ``all`` for every folder in ``<app>/model``). It runs in MONAI Label's
environment (``scripts/install_monailabel.sh``), which is why it lives here as a file of the package and is not
imported by it.

The tasks are MONAI Label's ``BundleInferTask`` and ``BundleTrainTask``, with what the bundles need on top:

* errors reach the client: a request that fails on its input (``ValueError``: an empty report, an unreadable image)
  answers HTTP 422 with the message that names the problem, any other failure HTTP 500 with its message (MONAI
  Label's own answer is a bare "Internal Server Error"); a failed training ends its log, the ``details`` of
  ``GET /train/``, with the message of the error that caused it (MONAI Label's log ends with the outermost one, such as
  "Failed to instantiate component CacheDataset");
* label names carry the mask values: a bundle with one output channel (a sigmoid, thresholded to 0/1) names value 1,
  where MONAI Label would name the channel index 0, the background;
* a 2D NIfTI result keeps the geometry (affine and header) of its input image, where MONAI Label writes 2D results
  without one;
* training with ``pretrained`` false starts from scratch (MONAI Label 0.8.5 fails with a ``TypeError``).

The bundles' configs do the rest: TGC-Net's ``displayable_configs`` shows ``text`` as ``null``, so that a request
without a report falls back to the report file beside the image, then to ``default_prompt``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import nibabel as nib
import numpy as np
import torch
from fastapi import HTTPException
from monai.data import MetaTensor
from monai_ext.text import TextInputError
from monailabel import __version__ as monailabel_version
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.utils.others.generic import file_ext, strtobool

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS = (".nii", ".nii.gz")


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of ``error``'s chain (``raise ... from`` and errors raised while handling another)."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class TextSegInferTask(BundleInferTask):
    """``BundleInferTask`` with errors as HTTP answers, label names that match the mask values and 2D NIfTI results
    in their input's geometry."""

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any):
        super().__init__(path, conf, **kwargs)
        if self.is_valid() and len(self.labels) == 1 and next(iter(self.labels.values())) == 0:
            self.labels = dict.fromkeys(self.labels, 1)  # one sigmoid channel: the mask marks it with 1

    def __call__(self, request, callbacks=None):
        try:
            text = request.get("text")
            if "text" in self.config() and isinstance(text, str) and not text.strip():
                raise TextInputError(
                    f"The request's text for image '{request.get('image')}' is empty: send the report, or no text to "
                    "use the report file beside the image (else the bundle's default prompt)."
                )
            return super().__call__(request, callbacks)
        except Exception as error:
            cause = root_cause(error)
            status = 422 if isinstance(cause, ValueError) else 500
            logger.exception(f"Inference failed: {describe(cause)}")
            raise HTTPException(status_code=status, detail=describe(cause)) from error

    def writer(self, data: dict[str, Any], extension=None, dtype=None):
        image_path = data.get("image_path")
        ext = extension or data.get("result_extension") or (file_ext(image_path) if image_path else None)
        pred = data[self.output_label_key]
        from_nifti = isinstance(image_path, str) and file_ext(image_path) in NIFTI_EXTENSIONS
        if ext not in NIFTI_EXTENSIONS or not from_nifti or np.ndim(pred) != 2:
            return super().writer(data, extension, dtype)
        return self._write_like_input(pred, image_path, ext), data.get(self.output_json_key, {})

    def _write_like_input(self, pred, image_path: str, ext: str) -> str:
        """Write a 2D mask with the affine and header of the NIfTI it was predicted from."""
        reference = nib.load(image_path)
        mask = (pred.array if isinstance(pred, MetaTensor) else torch.as_tensor(pred).numpy()).astype(np.uint8)
        if mask.size != int(np.prod(reference.shape)):
            raise ValueError(
                f"Result of shape {mask.shape} does not fit image '{image_path}' of shape {reference.shape}"
            )
        header = reference.header.copy()
        header.set_data_dtype(np.uint8)
        header["scl_slope"], header["scl_inter"] = 1, 0
        image = nib.Nifti1Image(mask.reshape(reference.shape), reference.affine, header)
        with tempfile.NamedTemporaryFile(suffix=ext, delete=False) as f:  # MONAI Label deletes it once sent
            output = f.name
        nib.save(image, output)
        return output


class TextSegTrainTask(BundleTrainTask):
    """``BundleTrainTask`` whose failure ends with the message of its cause, and that can start from scratch."""

    def __call__(self, request, datastore):
        try:
            return super().__call__(request, datastore)
        except Exception as error:
            raise RuntimeError(f"Training failed: {describe(root_cause(error))}") from error

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        if pretrained:
            super()._load_checkpoint(model_pytorch, pretrained, train_handlers)


class TextSegApp(MONAILabelApp):
    """The bundles named by ``--conf models`` (folders of ``<app>/model``), nothing is downloaded."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        model_dir = os.path.join(app_dir, "model")
        names = [n.strip() for n in conf.get("models", "").split(",") if n.strip()]
        if names == ["all"]:
            names = sorted(n for n in os.listdir(model_dir) if os.path.isdir(os.path.join(model_dir, n)))
        if not names:
            raise MONAILabelException(
                MONAILabelError.APP_INIT_ERROR,
                f"No model given: start the server with --conf models <name> (a folder of {model_dir})",
            )
        missing = [n for n in names if not os.path.isfile(os.path.join(model_dir, n, "configs", "inference.json"))]
        if missing:
            raise MONAILabelException(
                MONAILabelError.APP_INIT_ERROR,
                f"No bundle {missing} in {model_dir} (no configs/inference.json): prepare it with "
                "scripts/prepare_monailabel.py prepare --bundle_dir ... --app_dir ... --name ...",
            )
        self.models = {n: os.path.join(model_dir, n) for n in names}
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai-textseg",
            description="Text-guided segmentation bundles (TGC-Net, VLSA-Net)",
            version=monailabel_version,
        )

    def init_infers(self):
        infers = {}
        for name, path in self.models.items():
            task = TextSegInferTask(path, self.conf)
            if not task.is_valid():
                raise MONAILabelException(
                    MONAILabelError.APP_INIT_ERROR, f"Bundle '{path}' has no models/model.pt or models/model.ts"
                )
            infers[name] = task
        return infers

    def init_trainers(self):
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        trainers = {name: TextSegTrainTask(path, self.conf) for name, path in self.models.items()}
        return {name: task for name, task in trainers.items() if task.is_valid()}
