"""Which model answers for a deployment or a subscription, loaded once and shared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from limner.jobs.registry import LoadedModel, ModelRegistry
from limner.models import Model, ModelMetadata, load_model
from limner.models.remote import RemoteModel
from limner.net import UrlPolicy, guarded_client
from limner.settings import Settings
from limner.store.tables import Deployment, Subscription

#: Prefix of the ``model`` of an uploaded deployment: ``upload:PATH`` in the deployment's folder.
UPLOAD_PREFIX = "upload:"


def is_url(spec: str) -> bool:
    """Whether a model spec is an ``http(s)://`` URL."""
    return spec.startswith(("http://", "https://"))


def upload_path(models_dir: Path, dep_id: str, spec: str) -> Path:
    """Where the uploaded model ``upload:PATH`` of deployment ``dep_id`` lies."""
    return models_dir / dep_id / spec.removeprefix(UPLOAD_PREFIX)


def external_metadata(
    *,
    name: str,
    labels: list[str],
    input: dict[str, Any] | None,
    problem_type: str | None,
    output: str | None = None,
) -> ModelMetadata:
    """Metadata of an external model; its input defaults to raw uint8 NHWC pixels at 224×224."""
    spec: dict[str, Any] = {
        "width": 224,
        "height": 224,
        "layout": "NHWC",
        "dtype": "uint8",
        "scale": 1.0,
        "mean": 0.0,
        "std": 1.0,
    }
    spec.update(input or {})
    data: dict[str, Any] = {"labels": labels, "input": spec, "name": name}
    if problem_type:
        data["problem_type"] = problem_type
    if output:
        data["output"] = output
    return ModelMetadata.from_dict(data)


class ModelProvider:
    """Loads deployments' models and external subscriptions' remote models through a registry."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        device: str = "auto",
        models_dir: Path | None = None,
        url_policy: UrlPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        """``models_dir``: where uploads lie (``DATA_DIR/models``); ``url_policy``: when given,
        remote models are called through :func:`limner.net.guarded_client`."""
        self.registry = registry
        self.device = device
        self.models_dir = models_dir or Path("limner-data") / "models"
        self.url_policy = url_policy
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelProvider:
        """The provider a service with ``settings`` uses."""
        return cls(
            ModelRegistry(settings.max_loaded_models),
            device=settings.device,
            models_dir=settings.data_dir / "models",
            url_policy=UrlPolicy.parse(settings.allowed_urls),
            timeout=settings.model_load_timeout,
        )

    def http_client(self) -> httpx.Client | None:
        """A client for a remote model: guarded when a URL policy is set, else ``None``."""
        if self.url_policy is None:
            return None
        return guarded_client(self.url_policy, timeout=self.timeout)

    def for_deployment(self, dep: Deployment) -> LoadedModel:
        """The loaded model of a deployment."""
        return self.registry.get(f"deployment:{dep.id}", lambda: self._load(dep))

    def _load(self, dep: Deployment) -> Model:
        spec = dep.model
        meta = None
        url = is_url(spec)
        if spec.startswith(UPLOAD_PREFIX):
            meta = ModelMetadata.from_dict(dep.model_metadata)  # as read when it was deployed
            spec = str(upload_path(self.models_dir, dep.id, spec))
        elif dep.model_metadata.get("labels") and (url or Path(spec).suffix.lower() == ".keras"):
            # what its server and the user's fields (a .keras file: the upload beside it) gave
            # at deployment time
            meta = ModelMetadata.from_dict(dep.model_metadata)
        client = self.http_client() if url else None
        headers = dep.headers if url else None
        return load_model(spec, device=self.device, metadata=meta, headers=headers, client=client)

    def for_subscription(self, sub: Subscription, dep: Deployment | None) -> LoadedModel:
        """The model that explains a subscription's transactions."""
        if dep is not None:
            return self.for_deployment(dep)
        meta = ModelMetadata.from_dict(sub.model_metadata)
        url = str(sub.scoring_url)
        return self.registry.get(
            f"subscription:{sub.id}",
            lambda: RemoteModel(
                url, meta, input_name="image", headers=sub.headers, client=self.http_client()
            ),
        )

    def drop_deployment(self, dep_id: str) -> None:
        """Forget a removed deployment's model."""
        self.registry.drop(f"deployment:{dep_id}")

    def drop_subscription(self, sub_id: str) -> None:
        """Forget a removed external subscription's model."""
        self.registry.drop(f"subscription:{sub_id}")
