"""What the report template shows, worked out from a :class:`ReportExplanation`: formatted
numbers, plain-language readings and images as ``data:`` URIs (the template only lays it out)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from limner.report.model import ReportAnnotation, ReportExplanation
from limner.report.reading import deletion_reading, insertion_reading, sets_reading

#: Images are embedded at most this many pixels on their longer side (enough for a full-width
#: A4 figure at about 150 dpi); larger ones are scaled down, smaller ones kept byte for byte.
MAX_IMAGE_SIDE = 1200
#: Panes in the order a report shows them; other kinds follow, by name.
PANE_ORDER = ("positive", "negative", "heatmap", "saliency", "regions")
#: Panes that are data rather than pictures (the 16-bit region label map): never shown.
DATA_PANES = ("labels",)
_PNG = b"\x89PNG\r\n\x1a\n"


#: What a report says of an explanation made without its curves.
NO_CURVES = (
    "This explanation was made without its deletion and insertion curves (curves off), so it "
    "has no faithfulness numbers; explain it again with curves on to have them."
)


def data_uri(image: bytes, max_side: int = MAX_IMAGE_SIDE) -> str:
    """An image as a ``data:image/png`` URI, scaled down to ``max_side`` if larger."""
    with Image.open(io.BytesIO(image)) as im:
        if image.startswith(_PNG) and max(im.size) <= max_side:
            png = image
        else:
            im.thumbnail((max_side, max_side))
            out = io.BytesIO()
            im.save(out, format="PNG")
            png = out.getvalue()
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def when(moment: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM UTC`` (naive times as they are), or an em dash."""
    if moment is None:
        return "—"
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M")


def weight(value: float) -> str:
    """A region weight, signed, 4 decimals."""
    return f"{value:+.4f}"


@dataclass
class Figure:
    """One embedded image and its caption."""

    caption: str
    uri: str


@dataclass
class RegionRow:
    """One row of a class's region table."""

    id: int
    weight: str
    share: str
    interval: str | None
    #: whether the region's interval excludes 0 (``None``: no interval)
    sign_settled: bool | None


@dataclass
class ClassView:
    """One explained class: panes, region table, faithfulness and warnings."""

    label: str
    class_index: int
    probability: float
    figures: list[Figure]
    rows: list[RegionRow]
    has_intervals: bool
    #: whether the top regions settled; None: not applicable (a deterministic method)
    settled: bool | None
    ties: list[list[int]]
    fit_r2: float | None
    readings: list[str]
    sufficient: list[int]
    necessary: list[int]
    sets: str
    warnings: list[str]


@dataclass
class ItemView:
    """One explanation as the template shows it."""

    id: str
    status: str
    anchor: str
    deployment: str
    scoring_id: str
    facts: list[tuple[str, str]]
    sha256: str | None
    settings: list[tuple[str, str]]
    classes: list[ClassView]
    annotations: list[ReportAnnotation]
    image: str
    predicted: str
    confidence: float | None = None
    verdicts: list[str] = field(default_factory=list)


def item_view(item: ReportExplanation, index: int) -> ItemView:
    """Everything the template shows of one explanation."""
    result = item.result or {}
    requested = item.requested_by or "—"
    if item.requested_role:
        requested += f" ({item.requested_role})"
    predicted = f"{item.label} ({item.probability:.1%})"
    facts = [
        ("Deployment", item.deployment),
        ("Method", item.method),
        ("Requested by", f"{requested}, {when(item.requested_at)}"),
        ("Transaction", item.scoring_id),
        ("External id", item.external_id or "—"),
        ("Source", item.source or "—"),
        ("Predicted label", predicted),
        ("True label", item.feedback or "not given"),
    ]
    top = (result.get("predictions") or [{}])[0].get("class_index")
    return ItemView(
        id=item.explanation_id,
        status=item.status,
        anchor=f"explanation-{index}",
        deployment=item.deployment,
        scoring_id=item.scoring_id,
        facts=facts,
        sha256=item.artifact_sha256,
        settings=settings(result),
        classes=[
            class_view(c, item.panes.get(int(c["class_index"]), {}), top)
            for c in result.get("explanations", [])
        ],
        annotations=sorted(item.annotations, key=lambda a: a.created_at),
        image=data_uri(item.image),
        predicted=predicted,
        confidence=result.get("confidence"),
        verdicts=[a.verdict for a in item.annotations if a.verdict],
    )


def settings(result: dict[str, Any]) -> list[tuple[str, str]]:
    """How the explanation was made, from its RESULT (empty without one)."""
    if not result:
        return []
    seg = result.get("segmentation", {})
    rows = [
        ("Model", str(result.get("model", "—"))),
        ("Image", f"{result.get('width')} × {result.get('height')} px"),
        (
            "Segmentation",
            f"{seg.get('algorithm')}, {seg.get('count')} regions, {seg.get('baseline')} baseline",
        ),
    ]
    samples = f"{result.get('samples')}"
    if result.get("max_samples") is not None:
        samples += f" of at most {result['max_samples']}"
    rows.append(("Samples", f"{samples} (stopped: {result.get('stop_reason', '—')})"))
    if result.get("steps") is not None:
        rows.append(("Integration steps", str(result["steps"])))
    if result.get("layer") is not None:
        rows.append(("Layer", str(result["layer"])))
    rows += [
        ("Confidence", f"{result.get('confidence')}"),
        ("Tie tolerance", f"{result.get('tie_tolerance')}"),
        ("Seed", str(result.get("seed"))),
        (
            "Model evaluations",
            f"{result.get('model_evaluations')} in {result.get('seconds', 0.0):.2f} s",
        ),
    ]
    return rows


def class_view(c: dict[str, Any], panes: dict[str, bytes], top: int | None) -> ClassView:
    """One explained class of a RESULT with its pane PNGs."""
    kinds = [k for k in PANE_ORDER if k in panes] + sorted(
        set(panes) - set(PANE_ORDER) - set(DATA_PANES)
    )
    rows = [
        RegionRow(
            id=int(r["id"]),
            weight=weight(r["weight"]),
            share=f"{r['share']:.1f}",
            interval=(
                f"[{weight(r['interval'][0])}, {weight(r['interval'][1])}]"
                if r.get("interval")
                else None
            ),
            sign_settled=(
                r["interval"][0] > 0 or r["interval"][1] < 0 if r.get("interval") else None
            ),
        )
        for r in c.get("regions", [])
    ]
    label = str(c["label"])
    return ClassView(
        label=label,
        class_index=int(c["class_index"]),
        probability=float(c["probability"]),
        figures=[Figure(kind, data_uri(panes[kind])) for kind in kinds],
        rows=rows,
        has_intervals=any(r.interval is not None for r in rows),
        settled=None if c.get("settled", False) is None else bool(c.get("settled", False)),
        ties=[list(t) for t in c.get("ties", [])],
        fit_r2=c.get("fit_r2"),
        readings=[
            deletion_reading(c["deletion_auc"], c.get("random_deletion_auc")),
            insertion_reading(c["insertion_auc"], c.get("random_insertion_auc")),
        ]
        if c.get("deletion_auc") is not None
        else [NO_CURVES],
        sufficient=list(c.get("sufficient_regions") or []),
        necessary=list(c.get("necessary_regions") or []),
        sets=sets_reading(
            label,
            top == c["class_index"],
            list(c.get("sufficient_regions") or []),
            list(c.get("necessary_regions") or []),
        )
        if c.get("sufficient_regions") is not None
        else "",
        warnings=list(c.get("warnings", [])),
    )
