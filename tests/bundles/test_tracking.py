"""Experiment tracking through MONAI's bundle tracking: `tracking="mlflow"` logs the bundle's training to MLflow."""

import os

import mlflow
from monai.bundle import ConfigWorkflow
from monai_ext.demo import make_chest_xray_dataset

CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bundles", "tgcnet", "configs"
)


def test_mlflow_tracking_records_losses_and_metrics(tmp_path):
    make_chest_xray_dataset(tmp_path / "data", n_train=4, n_val=2, n_test=0, image_size=64, seed=0)
    workflow = ConfigWorkflow(
        config_file=[os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "demo.json")],
        workflow_type="train",
        tracking="mlflow",
        bundle_root=os.path.dirname(CONFIGS),
        dataset_dir=str(tmp_path / "data"),
        ckpt_dir=str(tmp_path / "models"),
        log_dir=str(tmp_path / "runs"),
        output_dir=str(tmp_path / "eval"),
        image_size=64,
        max_epochs=2,
        batch_size=2,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()

    database = tmp_path / "eval" / "mlruns.db"  # MONAI's default tracking_uri: sqlite under output_dir
    assert database.is_file()
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["params.max_epochs"] == "2"
    for metric in ("metrics.train_loss", "metrics.val_mean_dice", "metrics.val_mean_iou"):
        assert 0 <= float(run[metric]) < 10
    history = mlflow.tracking.MlflowClient().get_metric_history(run["run_id"], "val_mean_dice")
    assert len(history) == 2  # one value per validation epoch
