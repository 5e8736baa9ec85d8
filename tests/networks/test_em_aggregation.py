"""EMAggregation: EM invariants, moving-average bases (train only, same on all ranks), clustering, gradients."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from monai_ext.networks.blocks.em_aggregation import EMAggregation


def make_em(**kwargs):
    torch.manual_seed(0)
    return EMAggregation(in_channels=8, num_bases=4, **kwargs)


def test_shapes_unit_bases_and_normalised_assignments():
    em = make_em().eval()
    x = torch.randn(2, 8, 5, 6)
    out, z, bases = em(x, return_assignments=True)
    assert out.shape == x.shape
    assert z.shape == (2, 30, 4) and bases.shape == (2, 8, 4)
    torch.testing.assert_close(z.sum(dim=2), torch.ones(2, 30))
    torch.testing.assert_close(bases.norm(dim=1), torch.ones(2, 4))
    torch.testing.assert_close(em.bases.norm(dim=1), torch.ones(1, 4))
    # The returned responsibilities are the E-step of the returned bases.
    features = em.conv_in(x).flatten(2)
    torch.testing.assert_close(z, torch.softmax(features.transpose(1, 2) @ bases, dim=2))
    assert (out >= 0).all()


def test_three_dimensional_input():
    em = EMAggregation(in_channels=4, num_bases=3, spatial_dims=3).eval()
    x = torch.randn(1, 4, 3, 4, 5)
    assert em(x).shape == x.shape


def test_buffer_follows_momentum_formula_in_training_only():
    em = make_em(momentum=0.8).train()
    before = em.bases.clone()
    _, _, bases = em(torch.randn(3, 8, 4, 4), return_assignments=True)
    expected = F.normalize(0.8 * before + 0.2 * bases.mean(dim=0, keepdim=True), dim=1)
    torch.testing.assert_close(em.bases, expected)
    assert not torch.allclose(em.bases, before)

    em.eval()
    frozen = em.bases.clone()
    x = torch.randn(2, 8, 4, 4)
    first, second = em(x), em(x)
    torch.testing.assert_close(em.bases, frozen, rtol=0, atol=0)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_bases_are_in_the_state_dict():
    em = make_em().train()
    em(torch.randn(2, 8, 4, 4))
    restored = EMAggregation(in_channels=8, num_bases=4)
    restored.load_state_dict(em.state_dict())
    torch.testing.assert_close(restored.bases, em.bases)


def test_em_moves_bases_to_cluster_centres():
    em = EMAggregation(in_channels=4, num_bases=2, iterations=4).eval()
    with torch.no_grad():
        em.conv_in.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        em.conv_in.bias.zero_()
        e1, e2 = torch.eye(4)[0], torch.eye(4)[1]
        em.bases.copy_(F.normalize(torch.stack([e1 + 0.6 * e2, e2 + 0.6 * e1], dim=1), dim=0).unsqueeze(0))
    # Left half of the image along e1, right half along e2.
    x = torch.zeros(1, 4, 4, 8)
    x[0, 0, :, :4] = 5.0
    x[0, 1, :, 4:] = 5.0
    _, z, bases = em(x, return_assignments=True)
    assert F.cosine_similarity(bases[0, :, 0], e1, dim=0) > 0.99
    assert F.cosine_similarity(bases[0, :, 1], e2, dim=0) > 0.99
    side = z[0].argmax(dim=1).reshape(4, 8)
    assert (side[:, :4] == 0).all() and (side[:, 4:] == 1).all()


@pytest.mark.parametrize("truncate", [True, False])
def test_gradients_reach_input_and_both_convolutions(truncate):
    em = make_em(truncate_gradient=truncate).train()
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    em(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in em.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_arguments_and_input():
    with pytest.raises(ValueError, match="iterations"):
        EMAggregation(8, iterations=0)
    with pytest.raises(ValueError, match="momentum"):
        EMAggregation(8, momentum=1.0)
    with pytest.raises(ValueError, match=r"\[B, 8, \*spatial\]"):
        make_em()(torch.randn(2, 3, 4, 4))


def _distributed_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)  # same initial bases on every rank
        em = EMAggregation(in_channels=8, num_bases=4, momentum=0.5).train()
        initial = em.bases.clone()
        torch.manual_seed(100 + rank)  # different data per rank
        _, _, bases = em(torch.randn(2, 8, 4, 4), return_assignments=True)
        torch.save(
            {"initial": initial, "batch_mean": bases.mean(0, keepdim=True), "bases": em.bases.clone()},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="needs torch.distributed")
def test_bases_stay_identical_across_ranks(tmp_path):
    # spawn, not fork: forking after earlier tests started OpenMP threads can deadlock the workers.
    mp.start_processes(
        _distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert not torch.allclose(results[0]["batch_mean"], results[1]["batch_mean"])
    torch.testing.assert_close(results[0]["bases"], results[1]["bases"], rtol=0, atol=0)
    mean = (results[0]["batch_mean"] + results[1]["batch_mean"]) / 2
    torch.testing.assert_close(results[0]["bases"], F.normalize(0.5 * results[0]["initial"] + 0.5 * mean, dim=1))
