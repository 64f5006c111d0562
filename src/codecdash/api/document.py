"""What the generated OpenAPI document cannot know by itself, added to it.

- **Storable JSON.** `params` and `extra` take any JSON value that the store can keep:
  integers within 64 bits (what orjson writes), strings and keys of at most 10,000
  characters at any depth. Pydantic documents `JsonValue` as `{}` (anything).
- **Links.** Operations that need an existing resource (an anchor, an experiment) are
  linked from the operations that write it, with the parameters to pass, so
  generated clients and stateful fuzzers (`st run`'s stateful phase) can chain them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codecdash.models import MAX_TEXT

_JSON_REF = "#/components/schemas/JsonValue"
STORABLE_JSON: dict[str, Any] = {
    "description": (
        "Any JSON value the store can keep: integers from -2^63 to 2^64-1, strings and "
        f"keys of at most {MAX_TEXT:,} characters at any depth. (A number written with a "
        "fraction or an exponent, such as 1e300, is a float and may be larger; JSON Schema "
        "counts it as an integer.)"
    ),
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "string", "maxLength": MAX_TEXT},
        {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "array", "items": {"$ref": _JSON_REF}},
        {
            "type": "object",
            "additionalProperties": {"$ref": _JSON_REF},
            "propertyNames": {"maxLength": MAX_TEXT},
        },
    ],
}


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: after `source` answers one of `statuses`, `target` can be called
    with `parameters` (``"path.name"`` / ``"query.name"`` → a runtime expression)."""

    name: str
    source: tuple[str, str]
    statuses: tuple[str, ...]
    target: tuple[str, str]
    parameters: dict[str, str]
    description: str


EXPERIMENT = "/api/v1/experiments/{experiment_id}"
EXPERIMENT_BD_RATE = "/api/v1/experiments/{experiment_id}/bd-rate"
EXPERIMENT_METRICS = "/api/v1/experiments/{experiment_id}/metrics"
ANCHOR = "/api/v1/anchors/{name}"
ANCHOR_BD_RATE = "/api/v1/anchors/{name}/bd-rate"
_WRITTEN = ("200", "201")


def _experiment_links(source: tuple[str, str], statuses: tuple[str, ...], at: str) -> list[Link]:
    """From an answer holding an experiment at JSON pointer `at` to what reads or changes it."""
    exp_id = f"$response.body#{at}/id"
    return [
        Link(
            "GetExperiment",
            source,
            statuses,
            ("get", EXPERIMENT),
            {"path.experiment_id": exp_id},
            "The experiment",
        ),
        Link(
            "UpdateExperiment",
            source,
            statuses,
            ("patch", EXPERIMENT),
            {"path.experiment_id": exp_id},
            "Change some of its fields",
        ),
        Link(
            "ReplaceExperiment",
            source,
            statuses,
            ("put", EXPERIMENT),
            {"path.experiment_id": exp_id},
            "Replace it",
        ),
        Link(
            "ExperimentBdRate",
            source,
            statuses,
            ("get", EXPERIMENT_BD_RATE),
            {"path.experiment_id": exp_id},
            "Its BD-rate report against the anchor in force",
        ),
        Link(
            "ExperimentBdRateAgainstItsAnchor",
            source,
            statuses,
            ("get", ANCHOR_BD_RATE),
            {"path.name": f"$response.body#{at}/bd_rate_anchor", "query.experiment_id": exp_id},
            "Its BD-rate report against the anchor its stored bd_rate_pct was measured on",
        ),
        Link(
            "TrainingCurves",
            source,
            statuses,
            ("get", EXPERIMENT_METRICS),
            {"path.experiment_id": exp_id},
            "Its training curves",
        ),
        Link(
            "DeleteExperiment",
            source,
            statuses,
            ("delete", EXPERIMENT),
            {"path.experiment_id": exp_id},
            "Move it to the trash",
        ),
    ]


def _anchor_links(source: tuple[str, str], statuses: tuple[str, ...], name: str) -> list[Link]:
    """From an answer naming an anchor (runtime expression `name`) to what uses it."""
    return [
        Link("GetAnchor", source, statuses, ("get", ANCHOR), {"path.name": name}, "The anchor"),
        Link(
            "DeleteAnchor",
            source,
            statuses,
            ("delete", ANCHOR),
            {"path.name": name},
            "Delete it",
        ),
        Link(
            "AnchorBdRate",
            source,
            statuses,
            ("get", ANCHOR_BD_RATE),
            {"path.name": name},
            "An experiment's BD-rate report against it",
        ),
        Link(
            "ExperimentBdRateAgainstAnchor",
            source,
            statuses,
            ("get", EXPERIMENT_BD_RATE),
            {"query.anchor": name},
            "An experiment's BD-rate report against it",
        ),
    ]


LINKS: tuple[Link, ...] = (
    *_experiment_links(("post", "/api/v1/experiments"), ("201",), ""),
    *_experiment_links(("put", EXPERIMENT), _WRITTEN, ""),
    *_experiment_links(("patch", EXPERIMENT), ("200",), ""),
    *_anchor_links(("put", ANCHOR), _WRITTEN, "$response.body#/name"),
    Link(
        "GetDeletedAnchor",
        ("delete", ANCHOR),
        ("200",),
        ("get", ANCHOR),
        {"path.name": "$request.path.name"},
        "The anchor just deleted: 404 from now on",
    ),
)


def complete(schema: dict[str, Any]) -> None:
    """Add the storable-JSON bounds and the links to a generated document (in place)."""
    schemas = schema.get("components", {}).get("schemas", {})
    if "JsonValue" in schemas:
        schemas["JsonValue"] = STORABLE_JSON
    paths = schema.get("paths", {})
    for link in LINKS:
        source = paths.get(link.source[1], {}).get(link.source[0])
        target = paths.get(link.target[1], {}).get(link.target[0])
        if source is None or target is None:
            continue  # an app without that route (none today; kept safe for subsets)
        for status in link.statuses:
            response = source.get("responses", {}).get(status)
            if response is None:
                continue
            response.setdefault("links", {})[link.name] = {
                "operationId": target["operationId"],
                "parameters": link.parameters,
                "description": link.description,
            }
