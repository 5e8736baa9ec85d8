"""Determinism: the TGC-Net bundle trained twice with the same seed and config on CPU gives identical metrics and
weights; another seed gives other weights (the seed is really used)."""

import os

import torch
from monai.bundle import ConfigWorkflow
from monai_ext.demo import make_chest_xray_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
TRAIN = [os.path.join(BUNDLE, "configs", "train.json"), os.path.join(BUNDLE, "configs", "demo.json")]


def _train(data_dir, out, seed):
    workflow = ConfigWorkflow(
        config_file=TRAIN,
        workflow_type="train",
        bundle_root=BUNDLE,
        dataset_dir=data_dir,
        ckpt_dir=os.path.join(out, "models"),
        log_dir=os.path.join(out, "runs"),
        output_dir=os.path.join(out, "eval"),
        max_epochs=2,
        batch_size=4,
        image_size=64,
        seed=seed,
    )
    workflow.initialize()
    workflow.run()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    metrics = {**trainer.state.metrics, **evaluator.state.metrics, "loss": float(trainer.state.output[0]["loss"])}
    weights = {k: v.detach().clone() for k, v in workflow.parser.get_parsed_content("network_def").state_dict().items()}
    workflow.finalize()
    return metrics, weights


def test_same_seed_same_metrics_and_weights(tmp_path):
    data_dir = str(tmp_path / "data")
    make_chest_xray_dataset(data_dir, n_train=8, n_val=4, n_test=2, image_size=64, seed=2)
    metrics_a, weights_a = _train(data_dir, str(tmp_path / "a"), seed=11)
    metrics_b, weights_b = _train(data_dir, str(tmp_path / "b"), seed=11)
    assert set(metrics_a) >= {"val_mean_dice", "val_mean_iou", "train_mean_dice", "loss"}
    assert metrics_a == metrics_b  # exactly, not approximately
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=0, atol=0, msg=key)
    _, weights_c = _train(data_dir, str(tmp_path / "c"), seed=12)
    assert any(not torch.equal(weights_a[k], weights_c[k]) for k in weights_a)
