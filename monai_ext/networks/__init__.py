"""Networks and building blocks; CLIP backbones are loaded through :func:`monai_ext.networks.clip.create_clip`."""

from .clip import TINY_CLIP_NAME, ClipCheckpointError, PretrainedWeightsNotFoundError, create_clip, get_clip_tokenizer
from .nets import TGCNet, VLSANet, load_class_prompts
from .utils import count_parameters
