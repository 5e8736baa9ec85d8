"""Networks, one per file."""

from .tgcnet import TGCNet
from .vlsanet import VLSANet, load_class_prompts
