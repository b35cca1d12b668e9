"""Deploying what was trained: the model directory (as .zip) and the .keras file, uploaded
through ``APIClient``; a scored image becomes a transaction that is then explained."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from limner.client import APIClient
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key

EXPLAIN = {"method": "kernelshap", "samples": 64, "segmentation": "slic", "segments": 12}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("svc"), database_url="", workers=2)
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "train-tests")
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        yield APIClient(server.url, api_key=key)


def _deploy_score_explain(client: APIClient, name: str, artifact: Path, image: Path) -> dict:
    dep = client.deployments.create(name=name, file=artifact)
    sub = client.subscriptions.create(deployment_id=dep.id)
    sub.enable_explainability(**EXPLAIN)
    scoring_id = client.score(dep, image).scoring_id
    exp = client.explanations.create(scoring_id).wait(timeout=120)
    return exp.result


def test_deploy_trained_model_dir(client: APIClient, trained_dir: Path, shapes_dir: Path) -> None:
    archive = trained_dir.parent / "shapes-model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("model.onnx", "limner-model.json"):
            z.write(trained_dir / name, f"shapes-model/{name}")
    image = shapes_dir / "validation" / "square" / "square_0199.png"
    result = _deploy_score_explain(client, "shapes", archive, image)
    assert result["predictions"][0]["label"] == "square"
    assert result["explanations"][0]["regions"]


def test_deploy_keras_file(client: APIClient, keras_model: Path, shapes_dir: Path) -> None:
    pytest.importorskip("keras")
    image = shapes_dir / "validation" / "circle" / "circle_0199.png"
    result = _deploy_score_explain(client, "shapes-keras", keras_model, image)
    assert result["predictions"][0]["label"] in ("class_0", "class_1")
    assert result["explanations"][0]["regions"]
