"""A training step (forward and backward) and an inference step of each bundle make the GPU wait for nothing.

On a GPU (skipped without one) the steps run under ``torch.cuda.set_sync_debug_mode("error")``, which raises at any
host-device synchronisation. On the CPU nothing synchronises, so a dispatch mode records instead the operations that
would make a GPU wait because the host needs a value computed there: reading a scalar (``item``, ``bool``, ``int``),
``nonzero`` (boolean-mask indexing), ``unique``, ``masked_select``... The same steps must run none of them.

Each check runs on a batch of reports the network has not seen (cache misses are encoded in the step), after one
warm-up step on another batch (first-call set-up; on the CPU the warm-up is checked too, which covers VLSA-Net's
class prompts, encoded on its first forward).
"""

import itertools
import os

import pytest
import torch
from monai.bundle import ConfigParser
from monai_ext.demo import make_chest_xray_dataset, make_fundus_dataset
from torch.utils._python_dispatch import TorchDispatchMode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 64

# Operations whose result size or value the host must read from the device.
HOST_READS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::is_nonzero",
    "aten::equal",
    "aten::allclose",
    "aten::repeat_interleave",
}


class HostReadRecorder(TorchDispatchMode):
    """Records the operations of :data:`HOST_READS`, and indexing with a boolean mask (a ``nonzero`` on a GPU)."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in HOST_READS:
            self.reads.append(name)
        elif name in ("aten::index", "aten::index_put", "aten::index_put_"):
            indices = args[1] if len(args) > 1 else []
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                self.reads.append(f"{name} with a boolean mask")
        return func(*args, **(kwargs or {}))


def _parser(bundle: str, configs: list[str], device: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([os.path.join(REPO, "bundles", bundle, "configs", name) for name in configs])
    parser.update(
        {
            "bundle_root": os.path.join(REPO, "bundles", bundle),
            "image_size": SIZE,
            "batch_size": 2,
            "num_workers": 0,
            "cache_rate": 0.0,
            "device": f"$torch.device('{device}')",
            **overrides,
        }
    )
    return parser


def _tgcnet(tmp_path, device):
    data_dir = str(tmp_path / "chest")
    make_chest_xray_dataset(data_dir, n_train=6, n_val=2, n_test=2, image_size=SIZE, seed=3)
    return _parser("tgcnet", ["train.json", "demo.json"], device, dataset_dir=data_dir)


def _vlsanet(tmp_path, device):
    data_dir = str(tmp_path / "fundus")
    make_fundus_dataset(data_dir, n_per_domain=12, image_size=SIZE, seed=3, domains=["domain_a"])
    domain = os.path.join(data_dir, "domain_a")
    return _parser(
        "vlsanet",
        ["train.json", "demo.json"],
        device,
        dataset_dir=domain,
        datalist_file=os.path.join(domain, "datalist.json"),
    )


BUNDLES = {"tgcnet": _tgcnet, "vlsanet": _vlsanet}


def _prepared(engine, batch, device):
    prepared = engine.prepare_batch(batch, device, True)
    return prepared if len(prepared) == 4 else (*prepared, (), {})


def _steps(parser: ConfigParser, check):
    """Warm-up step, then a checked training step (forward, loss, backward) and a checked inference step, each on a
    batch not met before; ``check(first)`` is the context the step runs in."""
    trainer = parser.get_parsed_content("train#trainer")
    evaluator = parser.get_parsed_content("validate#evaluator")
    batches = list(itertools.islice(iter(parser.get_parsed_content("train#dataloader")), 3))
    assert len(batches) == 3
    network, device = trainer.network, trainer.state.device
    for index, batch in enumerate(batches[:2]):
        inputs, targets, args, kwargs = _prepared(trainer, batch, device)
        network.train()
        with check(index == 0), torch.autocast(device.type, enabled=trainer.amp):
            loss = trainer.loss_function(trainer.inferer(inputs, network, *args, **kwargs), targets).mean()
            loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
    inputs, _, args, kwargs = _prepared(evaluator, batches[2], device)
    network.eval()
    with check(False), torch.no_grad(), torch.autocast(device.type, enabled=evaluator.amp):
        logits = evaluator.inferer(inputs, network, *args, **kwargs)
    assert torch.isfinite(torch.as_tensor(logits).float()).all()


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_steps_read_no_value_on_the_host_cpu(tmp_path, bundle):
    parser = BUNDLES[bundle](tmp_path, "cpu")
    recorders = []

    def check(first):
        recorders.append(HostReadRecorder())
        return recorders[-1]

    _steps(parser, check)
    reads = sorted({read for recorder in recorders for read in recorder.reads})
    assert reads == [], f"{bundle}: operations that would make a GPU wait: {reads}"


def test_recorder_sees_a_host_read():
    """The recorder above is not blind: a Python ``if`` on a tensor and boolean-mask indexing are both recorded."""
    values = torch.arange(4.0)
    with HostReadRecorder() as recorder:
        if (values > 2).any():
            values = values[values > 1]
    assert recorder.reads == ["aten::_local_scalar_dense", "aten::index with a boolean mask"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_steps_make_no_host_device_sync_gpu(tmp_path, bundle):
    parser = BUNDLES[bundle](tmp_path, "cuda")

    class SyncDebug:
        def __init__(self, first):
            self.mode = "default" if first else "error"

        def __enter__(self):
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode(self.mode)

        def __exit__(self, *exc):
            torch.cuda.set_sync_debug_mode("default")
            return False

    _steps(parser, SyncDebug)
