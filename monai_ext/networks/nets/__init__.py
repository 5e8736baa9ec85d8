"""Networks, one per file."""

from .tgcnet import TGCNet
