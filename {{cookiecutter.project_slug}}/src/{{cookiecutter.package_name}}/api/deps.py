"""The dependencies routes declare, as `Annotated` aliases: the services, and the caller with
the scope the route needs (401 without a valid key, 403 without the scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..container import Services
from .security import Caller, require


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
QueryCaller = Annotated[Caller, Depends(require("query"))]
IngestCaller = Annotated[Caller, Depends(require("ingest"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
