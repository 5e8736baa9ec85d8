"""Networks, one per file."""

from .guide_decoder import GuideDecoderNet
from .tgcnet import TGCNet
from .vlsanet import VLSANet, load_class_prompts
