"""A handle on an explanation job: wait for it, look at it, save it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limner.client._core import poll_until_done
from limner.errors import LimnerError, NotFoundError

if TYPE_CHECKING:
    from limner.client._core import Core
    from limner.imaging.views import ViewSettings

PANES = ("positive", "negative", "heatmap", "regions")
#: The pixel-level pane gradient methods (integrated-gradients, gradcam) add.
SALIENCY = "saliency"
#: The region label map (16-bit grayscale PNG, pixel value = region id; explanations made
#: before it existed lack it).
LABELS = "labels"
KINDS = (*PANES, SALIENCY, LABELS)


class ExplanationFailedError(LimnerError):
    """The explanation job ended in ``failed``; ``message`` says why."""

    code = "explanation_failed"
    status = 422


class Explanation:
    """An explanation job on the server; :meth:`refresh` or :meth:`wait` update it."""

    def __init__(self, core: Core, data: dict[str, Any]) -> None:
        self._core = core
        self._update(data)

    def _update(self, data: dict[str, Any]) -> None:
        self.data = data
        self.id: str = data.get("explanation_id") or data["id"]
        self.scoring_id: str = data["scoring_id"]
        self.status: str = data.get("status", "queued")
        self.progress: float = float(data.get("progress") or 0.0)
        self.error: str | None = data.get("error")
        self.result: dict[str, Any] | None = data.get("result")

    @property
    def done(self) -> bool:
        """Whether the job has ended (finished or failed)."""
        return self.status in ("finished", "failed")

    def refresh(self) -> Explanation:
        """Read the job's current state from the server."""
        self._update(self._core.json("GET", f"/v1/explanations/{self.id}"))
        return self

    def wait(self, timeout: float | None = 120.0, *, poll: float = 0.25) -> Explanation:
        """Block until the job ends; return ``self`` when it finished.

        Raises:
            ExplanationFailedError: the job failed (``error`` says why).
            TimeoutError: it did not end within ``timeout`` seconds.
        """

        def status() -> str:
            if not self.done:
                self.refresh()
            return self.status

        what = f"explanation {self.id}"
        if poll_until_done(status, what=what, timeout=timeout, poll=poll) == "failed":
            raise ExplanationFailedError(f"explanation {self.id} failed: {self.error}")
        return self

    # --- the result ---------------------------------------------------------------------

    def _finished(self) -> dict[str, Any]:
        if self.result is None:
            raise NotFoundError(f"explanation {self.id} is {self.status}; wait() for it first")
        return self.result

    @property
    def explained_classes(self) -> list[int]:
        """Class indices explained, in the RESULT's order."""
        return [int(e["class_index"]) for e in self._finished()["explanations"]]

    def image(self, kind: str = "positive", class_index: int | None = None) -> bytes:
        """A pane as PNG bytes (``positive``, ``negative``, ``heatmap`` or ``regions``;
        ``saliency`` for the gradient methods; ``labels``, the region label map: 16-bit
        grayscale, pixel value = region id, to pair with the RESULT's region weights)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        ci = self.explained_classes[0] if class_index is None else class_index
        path = f"/v1/explanations/{self.id}/images/{ci}/{kind}.png"
        return self._core.request("GET", path).content

    def view(
        self,
        class_index: int | None = None,
        settings: ViewSettings | Mapping[str, Any] | str | None = None,
        **fields: Any,
    ) -> bytes:
        """A Vertex-style view of a class as PNG bytes, drawn by the server from what it stored
        (``settings``: :class:`~limner.imaging.views.ViewSettings`, a dict of its fields or
        ``"type=PIXELS,polarity=both"``; ``fields`` add to it, as
        ``view(color_map="RED_GREEN", polarity="both")``; fields left out are the
        subscription's default view, else the method's; docs/vertex.md)."""
        from limner.imaging.views import ViewSettings

        given: dict[str, Any] = {}
        if isinstance(settings, ViewSettings):
            given = settings.to_dict()
        elif isinstance(settings, str):
            given = _view_pairs(settings)
        elif settings is not None:
            given = dict(settings)
        given.update(fields)
        ViewSettings.from_dict(given)  # refuse a bad name or value before asking
        ci = self.explained_classes[0] if class_index is None else class_index
        path = f"/v1/explanations/{self.id}/images/{ci}/view.png"
        params = {k: v for k, v in given.items() if v is not None}
        return self._core.request("GET", path, params=params).content

    def original(self) -> bytes:
        """The transaction's image as it was scored."""
        return self._core.request("GET", f"/v1/transactions/{self.scoring_id}/image").content

    def show(
        self, class_index: int | None = None, *, figsize: tuple[float, float] = (12, 4.4)
    ) -> Any:
        """Plot the original, positive and negative panes side by side (matplotlib), and the
        saliency pane of a gradient method, with the fit R² and the RESULT's warnings under
        them; return the figure.

        In a notebook the figure shows exactly once: as the cell's value, or through
        ``display(exp.show(...))`` (in a loop). Elsewhere ``plt.show()`` opens it.
        """
        from limner.imaging.figure import caption_lines, show_panes

        result = self._finished()
        ci = self.explained_classes[0] if class_index is None else class_index
        entry = next(e for e in result["explanations"] if int(e["class_index"]) == ci)
        return show_panes(
            self.original(),
            self.image("positive", ci),
            self.image("negative", ci),
            label=entry["label"],
            probability=entry["probability"],
            method=result["method"],
            figsize=figsize,
            notes=caption_lines(entry),
            saliency=self.image(SALIENCY, ci) if SALIENCY in entry.get("images", {}) else None,
        )

    def save(self, directory: str | Path) -> Path:
        """Write every pane as PNG and the RESULT as ``result.json`` (panes named as files)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        result = json.loads(json.dumps(self._finished()))
        for entry in result["explanations"]:
            ci = int(entry["class_index"])
            for kind in [k for k in KINDS if k in entry.get("images", {})]:
                name = file_name(ci, entry["label"], kind)
                (d / name).write_bytes(self.image(kind, ci))
                entry.setdefault("images", {})[kind] = name
        (d / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        return d

    def annotate(self, note: str = "", *, verdict: str | None = None) -> dict[str, Any]:
        """Add a reviewer's note and/or verdict (``accepted``, ``needs-follow-up``,
        ``rejected``) to the explanation; return the stored annotation."""
        body = {"note": note, "verdict": verdict}
        return dict(self._core.json("POST", f"/v1/explanations/{self.id}/annotations", json=body))

    def annotations(self) -> list[dict[str, Any]]:
        """The explanation's annotations, oldest first (who, when, verdict, note)."""
        data = self._core.json("GET", f"/v1/explanations/{self.id}/annotations")
        return list(data["annotations"])

    def report(self, path: str | Path, *, format: str = "pdf") -> Path:
        """Save the explanation's report (``pdf`` or ``html``: the panes, the region table,
        faithfulness, the model, who asked, the annotations) to ``path``."""
        if format not in ("pdf", "html"):
            raise ValueError(f"format is pdf or html, not {format!r}")
        response = self._core.request("GET", f"/v1/explanations/{self.id}/report.{format}")
        target = Path(path)
        target.write_bytes(response.content)
        return target

    def __repr__(self) -> str:
        return f"<Explanation {self.id} {self.status} {self.progress:.0%}>"


def _view_pairs(text: str) -> dict[str, str]:
    """``name=value,...`` as a dict (checked by ``ViewSettings.parse``, kept as given)."""
    from limner.imaging.views import ViewSettings

    ViewSettings.parse(text)
    return dict(
        (name.strip(), value.strip())
        for name, _, value in (p.partition("=") for p in text.split(",") if p.strip())
    )


def file_name(class_index: int, label: str, kind: str) -> str:
    """``{class_index}-{label}-{kind}.png`` (the names ``limner explain`` writes too)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()
    return f"{class_index}-{slug or 'class'}-{kind}.png"
