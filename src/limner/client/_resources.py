"""Client resources: deployments, subscriptions, transactions, explanations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limner.client._core import error_from_response, poll_until_done
from limner.client._explanation import Explanation

if TYPE_CHECKING:
    from limner.client._core import Core


@dataclass
class Deployment:
    """A deployed model."""

    id: str
    name: str
    model: str
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Deployment:
        return cls(data["id"], data["name"], data["model"], data)


@dataclass
class Subscription:
    """A monitored model; turn explanations on with :meth:`enable_explainability`."""

    id: str
    name: str
    deployment_id: str | None
    explainability: dict[str, Any]
    data: dict[str, Any] = field(repr=False)
    _core: Core = field(repr=False, compare=False)

    @classmethod
    def of(cls, core: Core, data: dict[str, Any]) -> Subscription:
        return cls(
            data["id"],
            data["name"],
            data.get("deployment_id"),
            data.get("explainability") or {},
            data,
            core,
        )

    def enable_explainability(self, **settings: Any) -> Subscription:
        """Turn explanations on: ``method``, ``samples``, ``segmentation``, ``segments``,
        ``baseline`` as in ``limner explain``."""
        data = self._core.json(
            "PUT", f"/v1/subscriptions/{self.id}/explainability", json={"enabled": True, **settings}
        )
        self.explainability, self.data = data["explainability"], data
        return self

    def disable_explainability(self) -> Subscription:
        """Turn explanations off (requests answer 409 until turned on again)."""
        data = self._core.json(
            "PUT", f"/v1/subscriptions/{self.id}/explainability", json={"enabled": False}
        )
        self.explainability, self.data = data["explainability"], data
        return self

    def transactions(
        self, *, limit: int = 50, offset: int = 0, label: str | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """The subscription's transactions, newest first; ``filters`` as in
        :meth:`Transactions.list`."""
        params = query_params(limit=limit, offset=offset, label=label, **filters)
        data = self._core.json("GET", f"/v1/subscriptions/{self.id}/transactions", params=params)
        return list(data["transactions"])

    def log_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Log scorings of an external model: ``{"scoring_id"?, "image": base64,
        "probabilities": [...], "timestamp"?, "external_id"?, "source"?, "feedback"?}``."""
        data = self._core.json(
            "POST", f"/v1/subscriptions/{self.id}/payload-records", json={"records": records}
        )
        return list(data["records"])


class Deployments:
    """``client.deployments``."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def create(
        self,
        *,
        name: str,
        model: str | Path | None = None,
        file: str | Path | None = None,
        metadata: dict[str, Any] | str | Path | None = None,
        labels: list[str] | None = None,
        input: dict[str, Any] | None = None,
        output: str | None = None,
        problem_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Deployment:
        """Deploy ``model`` (a spec the server can load) or upload ``file`` (.onnx with
        ``metadata``, a model directory or a Hugging Face directory as .zip, or .keras).

        For a URL model, ``labels``, ``input`` (``width``, ``height``, ``layout``, ``scale``,
        ``mean``, ``std``, ...), ``output`` and ``problem_type`` give what its server does not
        publish, and ``headers`` (an ``Authorization`` key, say) go with every request to it;
        the server stores them and never shows them back.
        """
        if (model is None) == (file is None):
            raise ValueError("give exactly one of model= (a spec) or file= (an upload)")
        if model is not None:
            body: dict[str, Any] = {"name": name, "model": str(model)}
            if metadata is not None:
                body.update(_metadata_dict(metadata))
            extra = {
                "labels": labels,
                "input": input,
                "output": output,
                "problem_type": problem_type,
                "headers": headers,
            }
            body.update({k: v for k, v in extra.items() if v is not None})
            return Deployment.of(self._core.json("POST", "/v1/deployments", json=body))
        path = Path(str(file))
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            ("file", (path.name, path.read_bytes(), "application/octet-stream"))
        ]
        if metadata is not None:
            meta = (
                json.dumps(metadata) if isinstance(metadata, dict) else Path(metadata).read_text()
            )
            files.append(("metadata", ("limner-model.json", meta.encode(), "application/json")))
        data = self._core.json("POST", "/v1/deployments", data={"name": name}, files=files)
        return Deployment.of(data)

    def list(self) -> list[Deployment]:
        """The space's deployments."""
        return [Deployment.of(d) for d in self._core.json("GET", "/v1/deployments")["deployments"]]

    def get(self, deployment_id: str) -> Deployment:
        """One deployment."""
        return Deployment.of(self._core.json("GET", f"/v1/deployments/{deployment_id}"))

    def delete(self, deployment: Deployment | str) -> None:
        """Remove a deployment with its subscription, transactions and explanations."""
        self._core.request("DELETE", f"/v1/deployments/{_id(deployment)}")


class Explainers:
    """``client.explainers``: deployments' amortized explainers (docs/amortized.md)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def train(
        self,
        deployment: Deployment | str,
        *,
        images: list[str | Path] | None = None,
        wait: bool = False,
        timeout: float | None = None,
        poll: float = 1.0,
        **settings: Any,
    ) -> dict[str, Any]:
        """Train the deployment's explainer on its newest logged transactions, or on the
        ``images`` files given; ``settings``: ``limit``, ``baseline``, ``pairs``, ``epochs``,
        ``calibration_images``, ``reference_samples``, ``seed``. With ``wait``, return once
        the training is finished or failed."""
        path = f"/v1/deployments/{_id(deployment)}/explainers"
        if images is None:
            data = self._core.json("POST", path, json=settings)
        else:
            files = [
                ("images", (Path(p).name, Path(p).read_bytes(), "application/octet-stream"))
                for p in images
            ]
            fields = {k: str(v) for k, v in settings.items()}
            data = self._core.json("POST", path, data=fields, files=files)
        if wait:
            explainer_id = data["id"]

            def refresh() -> str:
                data.update(self.get(explainer_id))
                return str(data["status"])

            poll_until_done(refresh, what=f"explainer {explainer_id}", timeout=timeout, poll=poll)
        return data

    def list(self, deployment: Deployment | str) -> list[dict[str, Any]]:
        """The deployment's explainers, newest version first (``current``: the one method
        ``amortized`` uses)."""
        path = f"/v1/deployments/{_id(deployment)}/explainers"
        return list(self._core.json("GET", path)["explainers"])

    def get(self, explainer_id: str) -> dict[str, Any]:
        """One explainer training: status, progress, and once finished what it learned."""
        return dict(self._core.json("GET", f"/v1/explainers/{explainer_id}"))


class Subscriptions:
    """``client.subscriptions``."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def create(
        self,
        deployment_id: str | Deployment | None = None,
        *,
        name: str | None = None,
        scoring_url: str | None = None,
        labels: list[str] | None = None,
        input: dict[str, Any] | None = None,
        problem_type: str | None = None,
        output: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Subscription:
        """Subscribe a deployment, or an external model (``name``, ``scoring_url``, ``labels``,
        ``input``, ``problem_type``, ``output``; ``headers`` go with every request to the
        scoring URL, stored by the server and never shown back)."""
        body: dict[str, Any] = {
            k: v
            for k, v in {
                "deployment_id": _id(deployment_id) if deployment_id is not None else None,
                "name": name,
                "scoring_url": scoring_url,
                "labels": labels,
                "input": input,
                "problem_type": problem_type,
                "output": output,
                "headers": headers,
            }.items()
            if v is not None
        }
        return Subscription.of(self._core, self._core.json("POST", "/v1/subscriptions", json=body))

    def list(self) -> list[Subscription]:
        """The space's subscriptions."""
        data = self._core.json("GET", "/v1/subscriptions")["subscriptions"]
        return [Subscription.of(self._core, d) for d in data]

    def get(self, subscription_id: str) -> Subscription:
        """One subscription."""
        data = self._core.json("GET", f"/v1/subscriptions/{subscription_id}")
        return Subscription.of(self._core, data)

    def delete(self, subscription: Subscription | str) -> None:
        """Remove a subscription with its transactions and explanations."""
        self._core.request("DELETE", f"/v1/subscriptions/{_id(subscription)}")


class Transactions:
    """``client.transactions``."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def get(self, scoring_id: str) -> dict[str, Any]:
        """One transaction."""
        return dict(self._core.json("GET", f"/v1/transactions/{scoring_id}"))

    def image(self, scoring_id: str) -> bytes:
        """The transaction's image as scored."""
        return self._core.request("GET", f"/v1/transactions/{scoring_id}/image").content

    def list(self, *, limit: int = 50, offset: int = 0, **filters: Any) -> TransactionPage:
        """The space's transactions that ``filters`` select, newest first: ``label``,
        ``true_label``, ``misclassified``, ``deployment_id``, ``subscription_id``, ``since``,
        ``until`` (datetimes or ISO 8601), ``explained``, ``external_id``."""
        params = query_params(limit=limit, offset=offset, **filters)
        data = self._core.json("GET", "/v1/transactions", params=params)
        return TransactionPage(list(data["transactions"]), int(data["total"]))

    def set_feedback(self, scoring_id: str, label: str | None) -> dict[str, Any]:
        """Record the true label of a transaction (``None`` clears it)."""
        path = f"/v1/transactions/{scoring_id}/feedback"
        return dict(self._core.json("PUT", path, json={"label": label}))


@dataclass
class TransactionPage:
    """A page of transactions, and how many the filters select in all."""

    transactions: list[dict[str, Any]]
    total: int

    def __iter__(self) -> Any:
        return iter(self.transactions)

    def __len__(self) -> int:
        return len(self.transactions)


class Explanations:
    """``client.explanations``."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def create(
        self, scoring_id: str, *, classes: list[str | int] | None = None, **overrides: Any
    ) -> Explanation:
        """Request an explanation of a transaction; ``overrides`` (``method``, ``samples``,
        ``segmentation``, ``segments``, ``baseline``, ``top_k``, ``seed``) replace the
        subscription's settings for this one."""
        body: dict[str, Any] = {"scoring_id": scoring_id, **overrides}
        if classes is not None:
            body["classes"] = classes
        queued = self._core.json("POST", "/v1/explanations", json=body)
        return Explanation(self._core, queued)

    def get(self, explanation_id: str) -> Explanation:
        """One explanation."""
        return Explanation(self._core, self._core.json("GET", f"/v1/explanations/{explanation_id}"))

    def list(
        self, scoring_id: str | None = None, *, limit: int = 50, offset: int = 0, **filters: Any
    ) -> list[Explanation]:
        """Explanations that ``filters`` select, newest first: ``scoring_id``, ``status``,
        ``method``, ``class_`` (a label or an index), ``deployment_id``, ``requested_by`` (a
        key's name or id), ``settled``, ``warnings``, ``max_r2``, ``since``, ``until``."""
        params = query_params(scoring_id=scoring_id, limit=limit, offset=offset, **filters)
        data = self._core.json("GET", "/v1/explanations", params=params)["explanations"]
        return [Explanation(self._core, d) for d in data]

    def explain_many(
        self,
        *,
        settings: dict[str, Any] | None = None,
        limit: int | None = None,
        **filters: Any,
    ) -> dict[str, Any]:
        """Queue an explanation of every transaction ``filters`` select (those of
        :meth:`Transactions.list`; the newest ``limit``, at most 500), with ``settings``
        overriding the subscription's; until the space's jobs in flight reach their limit.
        Returns ``{"matched", "queued": [...], "not_queued", "reasons": [...]}``."""
        body: dict[str, Any] = {"filter": _json_filters(filters)}
        if settings:
            body["settings"] = settings
        if limit is not None:
            body["limit"] = limit
        return dict(self._core.json("POST", "/v1/explanations/batch", json=body))

    def export_jsonl(self, path: str | Path, **filters: Any) -> int:
        """Write the explanations ``filters`` select (as :meth:`list` takes them, and
        ``limit``/``offset``), with their RESULTs, to ``path`` as JSON Lines; return how many.
        The server marks each one exported."""
        params = query_params(**filters)
        count = 0
        with self._core.http.stream("GET", "/v1/explanations/export.jsonl", params=params) as r:
            if r.status_code >= 400:
                r.read()
                raise error_from_response(r)
            with Path(path).open("wb") as out:
                for line in r.iter_lines():
                    if line.strip():
                        out.write(line.encode() + b"\n")
                        count += 1
        return count


class Reports:
    """Reports of several explanations in one file: ``client.reports.save(ids, path)``."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def save(
        self,
        explanations: Sequence[Explanation | str],
        path: str | Path,
        *,
        format: str = "pdf",
        title: str | None = None,
    ) -> Path:
        """Save one report (``pdf`` or ``html``) of ``explanations`` (at most 50) to ``path``."""
        body: dict[str, Any] = {"explanation_ids": [_id(e) for e in explanations], "format": format}
        if title:
            body["title"] = title
        response = self._core.request("POST", "/v1/reports", json=body)
        target = Path(path)
        target.write_bytes(response.content)
        return target


def _metadata_dict(metadata: dict[str, Any] | str | Path) -> dict[str, Any]:
    """The fields of a ``limner-model.json`` given as a dict or a file, for a JSON body."""
    data = metadata if isinstance(metadata, dict) else json.loads(Path(metadata).read_text())
    keys = ("labels", "input", "output", "problem_type", "detection")
    return {k: data[k] for k in keys if k in data}


def _id(obj: Any) -> str:
    return str(getattr(obj, "id", obj))


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return getattr(value, "id", value)


def query_params(**values: Any) -> dict[str, Any]:
    """Keyword filters as query parameters (``class_`` is ``class``; ``None`` left out)."""
    return {k.rstrip("_"): _value(v) for k, v in values.items() if v is not None}


def _json_filters(values: dict[str, Any]) -> dict[str, Any]:
    """Keyword filters as a JSON filter object."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if v is None:
            continue
        out[k.rstrip("_")] = v.isoformat() if isinstance(v, datetime) else getattr(v, "id", v)
    return out
