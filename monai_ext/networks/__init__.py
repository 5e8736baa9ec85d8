"""Networks and building blocks; CLIP backbones are loaded through :func:`monai_ext.clip.create_clip`."""

from .nets import GuideDecoderNet, TGCNet, VLSANet, load_class_prompts
from .utils import count_parameters

__all__ = ["GuideDecoderNet", "TGCNet", "VLSANet", "count_parameters", "load_class_prompts"]
