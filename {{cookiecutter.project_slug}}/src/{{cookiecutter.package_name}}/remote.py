"""One JSON POST to a remote model endpoint (embeddings, reranker), with errors that name
the endpoint and the setting to check."""

from __future__ import annotations

from typing import Any

import httpx

from .errors import ServiceError


def post_json(
    client: httpx.Client,
    path: str,
    body: dict[str, Any],
    *,
    what: str,
    error: type[ServiceError],
    unreachable_fix: str,
    key_setting: str,
) -> httpx.Response:
    """The response of a successful POST; `what` names the endpoint in messages
    ("the reranker at http://..."), `error` is the ServiceError raised."""
    try:
        response = client.post(path, json=body)
    except httpx.HTTPError as exc:
        raise error(f"Could not reach {what}: {exc}. {unreachable_fix}") from exc
    if response.status_code in (401, 403):
        raise error(
            f"{what[0].upper()}{what[1:]} rejected the credentials "
            f"(HTTP {response.status_code}). Check {key_setting}."
        )
    if response.status_code >= 400:
        raise error(
            f"{what[0].upper()}{what[1:]} answered HTTP {response.status_code}: "
            f"{response.text[:200]}"
        )
    return response
