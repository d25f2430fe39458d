"""The OpenAPI document states this deployment's limits and error media type, so a client
(or a fuzzer) that follows the schema is never refused for reasons the schema hides."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from ..settings import Settings
from .errors import PROBLEM_MEDIA_TYPE
from .limits import MAX_FILTER_VALUE_CHARS

_PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}


def _non_null(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an `X | None` property."""
    return next(branch for branch in prop["anyOf"] if branch.get("type") != "null")


def document_limits(app: FastAPI, settings: Settings) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        schemas = document["components"]["schemas"]
        for model, text in (("QueryRequest", "question"), ("RetrieveRequest", "query")):
            properties = schemas[model]["properties"]
            # Whitespace is stripped before the length check: at least one other character.
            properties[text].update(maxLength=settings.max_question_chars, pattern=r"\S")
            _non_null(properties["top_k"])["maximum"] = settings.max_top_k
        _non_null(schemas["Filters"]["properties"]["source"]).update(
            maxItems=settings.max_filter_values,
            items={"type": "string", "maxLength": MAX_FILTER_VALUE_CHARS},
        )
        for name, upload in schemas.items():
            if name.startswith("Body_upload_documents"):
                upload["properties"]["files"].update(minItems=1, maxItems=settings.max_upload_files)
        # Errors are application/problem+json only.
        for operations in document["paths"].values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                # FastAPI gives every route with parameters a 422 of its own shape. Ours is a
                # problem, declared where validation can fail (a body); the others (string
                # parameters only) cannot answer 422.
                if PROBLEM_MEDIA_TYPE not in responses.get("422", {}).get("content", {}):
                    responses.pop("422", None)
                for response in responses.values():
                    content = response.get("content", {})
                    if PROBLEM_MEDIA_TYPE in content:
                        response["content"] = {PROBLEM_MEDIA_TYPE: _PROBLEM}
        if "/HTTPValidationError" not in json.dumps(document["paths"]):
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
