"""Query strings of the list routes: unknown names are refused, filters are read one way.

:func:`reject_unknown_query` is the one dependency that refuses (422) a query parameter a route
does not take, or one given twice: a typo in a filter's name must not silently widen a
selection. The ``*_filter`` dependencies read the filters of ``GET /v1/transactions`` and
``GET /v1/explanations`` (the dashboard reads the same models with :func:`filter_from`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ValidationError

from limner.errors import InvalidInputError
from limner.service.schemas import ExplanationFilter, Method, Status, TransactionFilter

F = TypeVar("F", bound=BaseModel)


def _route_query_names(route: Any) -> frozenset[str]:
    """The query parameter names a route (and its dependencies) declares."""
    names: set[str] = set()
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        for field in getattr(dependant, "query_params", []):
            model = getattr(field, "type_", None) or getattr(
                getattr(field, "field_info", None), "annotation", None
            )
            if isinstance(model, type) and issubclass(model, BaseModel):
                names.update(f.alias or n for n, f in model.model_fields.items())
            else:
                names.add(getattr(field, "alias", None) or field.name)
        stack.extend(getattr(dependant, "dependencies", []))
    return frozenset(names)


def check_query_names(given: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse (422) a name not in ``allowed``, or one given more than once."""
    allowed = set(allowed)
    seen: set[str] = set()
    for name in given:
        if name not in allowed:
            raise InvalidInputError(
                f"unknown query parameter {name[:60]!r}; this route takes "
                + ", ".join(sorted(allowed))
            )
        if name in seen:
            raise InvalidInputError(f"query parameter {name!r} is given more than once")
        seen.add(name)


def reject_unknown_query(request: Request) -> None:
    """A route dependency: 422 for a query parameter the route does not declare (or repeats)."""
    route = request.scope.get("route")
    allowed = _route_query_names(route) if route is not None else frozenset()
    check_query_names([name for name, _ in request.query_params.multi_items()], allowed)


KnownQuery = Depends(reject_unknown_query)


def filter_from(model: type[F], values: Mapping[str, Any], *, drop_empty: bool = True) -> F:
    """``values`` (query strings or form fields) as a filter ``model`` (422 naming the
    parameter and what is wrong with it). Empty values are left out (a form's blank field)
    unless ``drop_empty`` is false: then they are refused like any other bad value."""
    data = {k: v for k, v in values.items() if v is not None and (v != "" or not drop_empty)}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "since"
            message = str(e["msg"]).removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                message = "is not a filter"
            problems.append(f"{where}: {message}")
        raise InvalidInputError("; ".join(problems[:5])) from exc


def transaction_filter(
    label: Annotated[str | None, Query(description="The predicted label.")] = None,
    true_label: Annotated[str | None, Query(description="The true label (feedback).")] = None,
    misclassified: Annotated[
        bool | None, Query(description="Feedback that differs from the predicted label.")
    ] = None,
    deployment_id: Annotated[str | None, Query(description="The deployment that scored.")] = None,
    since: Annotated[datetime | None, Query(description="Scored at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Scored before (ISO 8601).")] = None,
    explained: Annotated[
        bool | None, Query(description="With an explanation queued, running or finished.")
    ] = None,
    external_id: Annotated[str | None, Query(description="The caller's case id.")] = None,
) -> TransactionFilter:
    """The transaction filters of a query string."""
    values = {k: v for k, v in locals().items() if v is not None}
    return filter_from(TransactionFilter, values, drop_empty=False)


TransactionFilterDep = Annotated[TransactionFilter, Depends(transaction_filter)]


def explanation_filter(
    scoring_id: Annotated[str | None, Query(description="Of this transaction.")] = None,
    status: Annotated[Status | None, Query()] = None,
    method: Annotated[Method | None, Query()] = None,
    class_: Annotated[
        str | None, Query(alias="class", description="An explained class: label or index.")
    ] = None,
    deployment_id: Annotated[
        str | None, Query(description="The deployment whose model explains.")
    ] = None,
    requested_by: Annotated[
        str | None, Query(description="The name or id of the key that asked.")
    ] = None,
    settled: Annotated[bool | None, Query(description="Every explained class settled.")] = None,
    warnings: Annotated[bool | None, Query(description="A class with warnings.")] = None,
    max_r2: Annotated[float | None, Query(description="A class's fit R² below this.")] = None,
    since: Annotated[datetime | None, Query(description="Requested at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Requested before.")] = None,
) -> ExplanationFilter:
    """The explanation filters of a query string."""
    values = {k: v for k, v in locals().items() if v is not None and k != "class_"}
    if class_ is not None:
        values["class"] = class_
    return filter_from(ExplanationFilter, values, drop_empty=False)


ExplanationFilterDep = Annotated[ExplanationFilter, Depends(explanation_filter)]
