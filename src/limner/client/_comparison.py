"""A handle on a comparison: one transaction explained several ways on the same regions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from limner.client._core import poll_until_done
from limner.client._explanation import Explanation, ExplanationFailedError
from limner.errors import NotFoundError

if TYPE_CHECKING:
    from limner.client._core import Core


class ComparisonFailedError(ExplanationFailedError):
    """An explanation of the comparison ended in ``failed``; ``message`` says which and why."""

    code = "comparison_failed"


@dataclass
class ComparedExplanation:
    """One column of a comparison: the deployment whose model explained, and the method."""

    id: str
    deployment_id: str | None
    deployment: str
    method: str
    status: str
    progress: float
    error: str | None
    _core: Core

    @property
    def name(self) -> str:
        """``deployment · method``: what the column is called."""
        return f"{self.deployment} · {self.method}"

    def explanation(self) -> Explanation:
        """The explanation itself (its RESULT, panes, ``show()``, ``save()``)."""
        return Explanation(self._core, self._core.json("GET", f"/v1/explanations/{self.id}"))


@dataclass
class Agreement:
    """How two explanations (``a``, ``b``: explanation ids) agree on one class."""

    label: str
    class_index: int
    a: str
    b: str
    #: Spearman's rank correlation of the region weights (None: undefined, a constant column).
    spearman: float | None
    #: How many of the 3 regions with the highest weight the two share, and which.
    top3_overlap: int
    top3_shared: list[int]


class Comparison:
    """A comparison on the server; :meth:`refresh` or :meth:`wait` update it."""

    def __init__(self, core: Core, data: dict[str, Any]) -> None:
        self._core = core
        self._update(data)

    def _update(self, data: dict[str, Any]) -> None:
        self.data = data
        self.id: str = data.get("comparison_id") or data["id"]
        self.scoring_id: str = data["scoring_id"]
        self.status: str = data.get("status", "queued")
        self.progress: float = float(data.get("progress") or 0.0)
        self.classes: list[dict[str, Any]] | None = data.get("classes")

    @property
    def explanations(self) -> list[ComparedExplanation]:
        """The compared explanations, in the order of the weight columns."""
        return [
            ComparedExplanation(
                id=e["id"],
                deployment_id=e.get("deployment_id"),
                deployment=e.get("deployment", ""),
                method=e.get("method", ""),
                status=e.get("status", "queued"),
                progress=float(e.get("progress") or 0.0),
                error=e.get("error"),
                _core=self._core,
            )
            for e in self.data.get("explanations", [])
        ]

    @property
    def done(self) -> bool:
        """Whether every explanation has ended (finished or failed)."""
        return self.status in ("finished", "failed")

    def refresh(self) -> Comparison:
        """Read the comparison's current state from the server."""
        self._update(self._core.json("GET", f"/v1/comparisons/{self.id}"))
        return self

    def wait(self, timeout: float | None = 300.0, *, poll: float = 0.25) -> Comparison:
        """Block until every explanation has ended; return ``self`` when all finished.

        Raises:
            ComparisonFailedError: an explanation failed (the message says which and why).
            TimeoutError: they did not end within ``timeout`` seconds.
        """

        def status() -> str:
            if not self.done:
                self.refresh()
            return self.status

        what = f"comparison {self.id}"
        if poll_until_done(status, what=what, timeout=timeout, poll=poll) == "failed":
            failed = "; ".join(
                f"{e.name}: {e.error}" for e in self.explanations if e.status == "failed"
            )
            raise ComparisonFailedError(f"comparison {self.id} failed: {failed}")
        return self

    def _classes(self) -> list[dict[str, Any]]:
        if self.classes is None:
            raise NotFoundError(f"comparison {self.id} is {self.status}; wait() for it first")
        return self.classes

    @property
    def agreement(self) -> list[Agreement]:
        """Every pair of explanations and how they agree, class by class."""
        return [
            Agreement(
                label=c["label"],
                class_index=int(c["class_index"]),
                a=p["a"],
                b=p["b"],
                spearman=p.get("spearman"),
                top3_overlap=int(p["top3_overlap"]),
                top3_shared=list(p.get("top3_shared", [])),
            )
            for c in self._classes()
            for p in c["agreement"]
        ]

    @property
    def disagreements(self) -> list[str]:
        """The regions the explanations disagree on, in words, class by class."""
        return [d["text"] for c in self._classes() for d in c["disagreements"]]

    def regions(self, class_index: int | None = None) -> list[dict[str, Any]]:
        """The region table of one class (default: the first): ``id``, ``area``, ``share``
        (percent of the image) and ``weights`` (one per explanation, in column order)."""
        classes = self._classes()
        if class_index is None:
            return list(classes[0]["regions"]) if classes else []
        for c in classes:
            if int(c["class_index"]) == class_index:
                return list(c["regions"])
        raise NotFoundError(f"class {class_index} was not compared")

    def __repr__(self) -> str:
        return f"<Comparison {self.id} {self.status} of {len(self.data.get('explanations', []))}>"


class Comparisons:
    """``client.comparisons``."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def create(
        self,
        scoring_id: str,
        *,
        deployments: Sequence[Any] | None = None,
        methods: Sequence[str] | None = None,
        classes: list[str | int] | None = None,
        **settings: Any,
    ) -> Comparison:
        """Explain a transaction with each of ``deployments`` (deployments, ids or names of the
        same labels; default: its own) and each of ``methods`` (default: the subscription's),
        all on one segmentation; ``settings`` (``samples``, ``segmentation``, ``segments``,
        ``baseline``, ``top_k``, ``seed`` …) replace the subscription's for all of them."""
        body: dict[str, Any] = {"scoring_id": scoring_id, **settings}
        if deployments is not None:
            body["deployment_ids"] = [str(getattr(d, "id", d)) for d in deployments]
        if methods is not None:
            body["methods"] = list(methods)
        if classes is not None:
            body["classes"] = classes
        queued = self._core.json("POST", "/v1/comparisons", json=body)
        return Comparison(self._core, queued)

    def get(self, comparison_id: str) -> Comparison:
        """One comparison."""
        return Comparison(self._core, self._core.json("GET", f"/v1/comparisons/{comparison_id}"))
