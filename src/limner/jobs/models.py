"""Which model answers for a deployment or a subscription, loaded once and shared."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from limner.jobs.registry import LoadedModel, ModelRegistry
from limner.jobs.sandbox import LoadSpec, WorkerLimits
from limner.jobs.workers import WorkerModel
from limner.models import ModelMetadata
from limner.net import UrlPolicy
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
    """Loads deployments' models and external subscriptions' remote models, each in a contained
    worker process (:class:`~limner.jobs.workers.WorkerModel`), through a registry."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        device: str = "auto",
        models_dir: Path | None = None,
        url_policy: UrlPolicy | None = None,
        allowed_urls: str = "",
        timeout: float = 60.0,
        limits: WorkerLimits | None = None,
    ) -> None:
        """``models_dir``: where uploads lie (``DATA_DIR/models``); ``url_policy`` and
        ``allowed_urls``: what remote models may reach (:func:`limner.net.guarded_client`);
        ``timeout``: seconds a remote model's call may take; ``limits``: each worker's."""
        self.registry = registry
        self.device = device
        self.models_dir = models_dir or Path("limner-data") / "models"
        self.url_policy = url_policy or UrlPolicy.parse(allowed_urls)
        self.allowed_urls = allowed_urls
        self.timeout = timeout
        self.limits = limits or WorkerLimits()

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelProvider:
        """The provider a service with ``settings`` uses."""
        return cls(
            ModelRegistry(settings.max_loaded_models),
            device=settings.device,
            models_dir=settings.data_dir / "models",
            allowed_urls=settings.allowed_urls,
            timeout=min(settings.model_load_timeout, settings.model_call_timeout),
            limits=worker_limits(settings),
        )

    def spec(
        self,
        spec: str,
        *,
        metadata: dict[str, Any] | None = None,
        full_metadata: bool = False,
        headers: dict[str, str] | None = None,
        tenant: bool = False,
        folder: Path | None = None,
        input_name: str | None = None,
    ) -> LoadSpec:
        """What a worker needs to load ``spec`` the way this service does."""
        return LoadSpec(
            spec=spec,
            device=self.device,
            metadata=metadata,
            full_metadata=full_metadata,
            headers=headers if is_url(spec) else None,
            allowed_urls=self.allowed_urls if is_url(spec) else None,
            timeout=self.timeout,
            tenant=tenant,
            folder=str(folder) if folder is not None else None,
            input_name=input_name,
        )

    def start(self, spec: LoadSpec) -> WorkerModel:
        """Load ``spec`` in a new worker (blocks until loaded, or fails)."""
        return WorkerModel(spec, self.limits)

    def for_deployment(self, dep: Deployment) -> LoadedModel:
        """The loaded model of a deployment."""
        # called by its metadata's name, else by the deployment's (never the generic "model")
        named = str(dep.model_metadata.get("name") or "model")
        name = dep.name if named == "model" else named
        return self.registry.get(
            f"deployment:{dep.id}", lambda: self.start(replace(self._spec(dep), name=name))
        )

    def _spec(self, dep: Deployment) -> LoadSpec:
        spec = dep.model
        url = is_url(spec)
        if spec.startswith(UPLOAD_PREFIX):
            path = upload_path(self.models_dir, dep.id, spec)
            # the metadata as read when it was deployed
            return self.spec(
                str(path),
                metadata=dep.model_metadata,
                full_metadata=True,
                folder=self.models_dir / dep.id,
            )
        if dep.model_metadata.get("labels") and (url or Path(spec).suffix.lower() == ".keras"):
            # what its server and the user's fields (a .keras file: the upload beside it) gave
            # at deployment time
            return self.spec(
                spec, metadata=dep.model_metadata, full_metadata=True, headers=dep.headers
            )
        return self.spec(spec, headers=dep.headers)

    def for_subscription(self, sub: Subscription, dep: Deployment | None) -> LoadedModel:
        """The model that explains a subscription's transactions."""
        if dep is not None:
            return self.for_deployment(dep)
        spec = self.spec(
            str(sub.scoring_url),
            metadata=sub.model_metadata,
            full_metadata=True,
            headers=sub.headers,
            input_name="image",
        )
        return self.registry.get(f"subscription:{sub.id}", lambda: self.start(spec))

    def for_explanation(
        self, sub: Subscription, dep: Deployment | None, explaining: Deployment | None
    ) -> LoadedModel:
        """The model that explains a job: the deployment it names (``explaining``, another
        deployment with the same labels), else its subscription's own model."""
        if explaining is not None:
            return self.for_deployment(explaining)
        return self.for_subscription(sub, dep)

    def drop_deployment(self, dep_id: str) -> None:
        """Forget a removed deployment's model (its worker stops)."""
        self.registry.drop(f"deployment:{dep_id}")

    def drop_subscription(self, sub_id: str) -> None:
        """Forget a removed external subscription's model (its worker stops)."""
        self.registry.drop(f"subscription:{sub_id}")


def worker_limits(settings: Settings) -> WorkerLimits:
    """Each model worker's limits under ``settings``."""
    return WorkerLimits(
        memory_bytes=settings.worker_memory_bytes,
        file_bytes=settings.max_unpacked_bytes,
        load_timeout=settings.model_load_timeout,
        call_timeout=settings.model_call_timeout,
    )
