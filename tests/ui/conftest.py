"""Dashboard fixtures: one real service on loopback with a subscription and scored photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_helpers import FAST, Dashboard

from limner.imaging import encode_png
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The service with one worker, a subscription of the built-in model and three photos."""
    from skimage import data

    data_dir: Path = tmp_path_factory.mktemp("limner-ui")
    settings = Settings(data_dir=data_dir, database_url="", workers=1)
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "default", role="admin")  # as `limner serve` creates it
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        board = Dashboard(server.url, key, settings)
        with board.client() as client:
            dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
            sub = client.subscriptions.create(deployment_id=dep.id)
            sub.enable_explainability(**FAST)
            for image in (data.coffee(), data.astronaut(), data.chelsea()):
                board.scoring_ids.append(str(client.score(dep, encode_png(image)).scoring_id))
        board.subscription_id = sub.id
        yield board
