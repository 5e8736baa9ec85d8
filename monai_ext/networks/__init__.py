"""Networks and building blocks; CLIP backbones are loaded through :func:`monai_ext.networks.clip.create_clip`."""

from .nets import TGCNet
