"""Building blocks shared by the networks."""

from .clip_encoders import ClipImageEncoder, ClipTextEncoder
from .conv_unet import ResidualEncoder, SkipUpBlock
from .em_aggregation import EMAggregation
from .text_guided_decoder import TextCrossAttention, TextGuidedPixelDecoder
