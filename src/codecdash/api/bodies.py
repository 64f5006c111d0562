"""JSON request bodies: parsed and validated from the raw bytes in a worker thread.

Every write route takes its body through a `JsonBody` dependency instead of FastAPI's body
parameter, which would parse (json.loads) and validate on the event loop: a 4 MiB body of
tiny objects held every other request for seconds. Here pydantic-core parses and validates
in one step, off the loop, with the server's clock in the context (times far in the future
are refused, models.clock). The body is documented in the OpenAPI document all the same:
each JsonBody registers its schema under a name (`BODIES`), which the app adds to the
document's components, and gives the route its `requestBody` (`JsonBody.openapi`).
"""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from codecdash.api.errors import MAX_DETAIL, BodyValidationError
from codecdash.api.state import state
from codecdash.models import clock

T = TypeVar("T")
BODIES: dict[str, TypeAdapter[Any]] = {}
"""Schema name → the adapter of every JsonBody, for the OpenAPI document's components."""


class JsonBody(Generic[T]):
    """A dependency: the request's body validated as `shape` (a model or a union)."""

    def __init__(self, shape: Any, schema_name: str) -> None:
        self.adapter: TypeAdapter[T] = TypeAdapter(shape)
        self.schema_name = schema_name
        BODIES[schema_name] = self.adapter

    async def __call__(self, request: Request) -> T:
        body = await request.body()  # received whole by the guard, after authentication
        context = clock(time.time(), state(request).settings.max_future_seconds)
        return await run_in_threadpool(self.parse, body, context)

    def parse(self, body: bytes, context: dict[str, Any] | None = None) -> T:
        """The validated body; BodyValidationError (422) listing at most MAX_DETAIL errors."""
        try:
            return self.adapter.validate_json(body or b"null", context=context)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False, include_context=False)
            errors = [{**e, "loc": ("body", *e["loc"])} for e in first[:MAX_DETAIL]]
            raise BodyValidationError(errors, exc.error_count()) from None

    @property
    def openapi(self) -> dict[str, Any]:
        """The route's `openapi_extra`: its request body, by reference."""
        ref = {"$ref": f"#/components/schemas/{self.schema_name}"}
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def document_bodies(components: dict[str, Any]) -> None:
    """Add every JsonBody's schema (and the schemas it refers to) to `components`."""
    for name, adapter in BODIES.items():
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
        for referred, definition in schema.pop("$defs", {}).items():
            components.setdefault(referred, definition)
        components[name] = schema
