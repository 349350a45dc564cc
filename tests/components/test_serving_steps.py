"""The batch_predict step (steps/serving_steps.py) on a saved champion: directly, from and to S3,
and through kfp.local as the `batch_predict` component."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from s3_fixtures import moto_server, s3_bucket, s3_env  # noqa: F401  (fixtures)
from transfer_automl.steps.serving_steps import batch_predict

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TEXTS = ["what a lovely day", "this is dreadful", "they said no", "great news, everyone", "", "fine"] * 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, samples_dir):
    """A wide-tower child of the sample mpqa task saved as the pyfunc model a registry would hold."""
    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.serving.export import serving_model
    from transfer_automl.tasks import load_task
    from transfer_automl.tasks.features import FeatureCache
    from transfer_automl.tracking.mlflow import save_serving_model

    root = tmp_path_factory.mktemp("batch")
    config = {"input_module": "random-hashed-64", "fine_tune": False, "hidden_layers": 1, "hidden_size": 8,
              "activation": "relu", "normalization": "none", "dropout": 0.0, "deep_lr": 0.03,
              "deep_reg": "disable_deep_tower", "wide_lr": 0.1, "wide_reg": 0.0001, "training_samples": 5000}
    task = load_task("mpqa", samples_dir)
    trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache(root / "cache"))
    result = trainer.train(config, task, keep_model=True)
    served = serving_model(result.model.eval(), task, trainer.config.wide_buckets, root / "bundle")
    return str(save_serving_model(served, root / "model"))


def _expected(model_dir):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_dir).predict(pd.DataFrame({"text": TEXTS}))


def test_batch_predict_writes_every_row_and_a_rerun_gives_the_same_file(model_dir, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"body": TEXTS}).to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    first = batch_predict(model_dir, str(source), str(out), column="body", batch_size=5)
    assert first["rows"] == len(TEXTS) and sum(first["labels"].values()) == len(TEXTS)
    assert f"{len(TEXTS)} rows of `{source}` (column `body`)" in first["markdown"]
    written = pq.read_table(out).to_pandas()
    pd.testing.assert_frame_equal(written.drop(columns="row"), _expected(model_dir), check_dtype=False)
    before = out.read_bytes()
    assert batch_predict(model_dir, str(source), str(out), column="body", batch_size=5)["rows"] == len(TEXTS)
    assert out.read_bytes() == before


@pytest.mark.slow
def test_batch_predict_scores_a_dataset_in_s3(model_dir, s3_bucket, tmp_path):
    from transfer_automl.storage import get_store

    store = get_store(f"s3://{s3_bucket}/data")
    local = tmp_path / "in.jsonl"
    pd.DataFrame({"text": TEXTS}).to_json(local, orient="records", lines=True)
    store.put_file("in.jsonl", local)
    result = batch_predict(model_dir, f"s3://{s3_bucket}/data/in.jsonl", f"s3://{s3_bucket}/data/scored.parquet")
    assert result["rows"] == len(TEXTS) and result["output_uri"] == f"s3://{s3_bucket}/data/scored.parquet"
    store.get_file("scored.parquet", tmp_path / "scored.parquet")
    assert pq.read_table(tmp_path / "scored.parquet").column("label").to_pylist() == _expected(model_dir)["label"].tolist()


@pytest.mark.e2e
def test_the_batch_predict_component_runs_through_kfp_local(model_dir, tmp_path):
    from components.batch_predict.component import batch_predict as component
    from transfer_automl.kubeflow.local import local_session

    source = tmp_path / "in.parquet"
    pd.DataFrame({"text": TEXTS}).to_parquet(source)
    out = tmp_path / "out.parquet"
    with local_session(tmp_path / "root"):
        task = component(model_uri=model_dir, input_uri=str(source), output_uri=str(out))
    assert task.outputs["Output"] == {"rows": len(TEXTS), "labels": json.loads(json.dumps(
        pq.read_table(out).to_pandas()["label"].value_counts().sort_index().to_dict())), "output_uri": str(out)}
    assert "# Batch prediction with" in Path(task.outputs["summary"].path).read_text()
