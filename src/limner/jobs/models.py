"""Which model answers for a deployment or a subscription, loaded once and shared."""

from __future__ import annotations

from typing import Any

from limner.jobs.registry import LoadedModel, ModelRegistry
from limner.models import Model, ModelMetadata, load_model
from limner.models.remote import RemoteModel
from limner.store.tables import Deployment, Subscription


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

    def __init__(self, registry: ModelRegistry, *, device: str = "auto") -> None:
        self.registry = registry
        self.device = device

    def for_deployment(self, dep: Deployment) -> LoadedModel:
        """The loaded model of a deployment."""
        return self.registry.get(f"deployment:{dep.id}", lambda: self._load(dep))

    def _load(self, dep: Deployment) -> Model:
        # the metadata stored at deployment time: what the model, its server, the files beside
        # it and the user's fields made of it (labels a URL model's server does not publish)
        meta = ModelMetadata.from_dict(dep.model_metadata) if dep.model_metadata else None
        return load_model(dep.model, device=self.device, metadata=meta, headers=dep.headers)

    def for_subscription(self, sub: Subscription, dep: Deployment | None) -> LoadedModel:
        """The model that explains a subscription's transactions."""
        if dep is not None:
            return self.for_deployment(dep)
        meta = ModelMetadata.from_dict(sub.model_metadata)
        url = str(sub.scoring_url)
        return self.registry.get(
            f"subscription:{sub.id}",
            lambda: RemoteModel(url, meta, input_name="image", headers=sub.headers),
        )

    def drop_deployment(self, dep_id: str) -> None:
        """Forget a removed deployment's model."""
        self.registry.drop(f"deployment:{dep_id}")

    def drop_subscription(self, sub_id: str) -> None:
        """Forget a removed external subscription's model."""
        self.registry.drop(f"subscription:{sub_id}")
