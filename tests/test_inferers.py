import torch
from monai_ext.inferers import TextSliceInferer


class _ScaledBy(torch.nn.Module):
    """A 2D 'network' whose output depends on an extra keyword input, like a text-guided network on its tokens."""

    def forward(self, image: torch.Tensor, text_tokens: torch.Tensor | None = None) -> torch.Tensor:
        scale = 1.0 if text_tokens is None else text_tokens.float().sum()
        return image * scale


def test_slice_inferer_passes_the_extra_inputs_to_every_slice():
    volume = torch.rand(1, 1, 6, 5, 4)  # [B, C, H, W, D], sliced along D
    tokens = torch.tensor([[2, 1]])
    inferer = TextSliceInferer(roi_size=(-1, -1), spatial_dim=2, sw_batch_size=3)
    out = inferer(volume, _ScaledBy(), text_tokens=tokens)
    assert out.shape == volume.shape
    torch.testing.assert_close(out, volume * 3)
    # without the tokens the same network gives another answer: the inferer did not drop them
    torch.testing.assert_close(inferer(volume, _ScaledBy()), volume)
