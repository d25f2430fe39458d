"""The web app at /ui (RAG_UI_ENABLED): its static files, its settings, the eval report.

The pages are public, like /docs; everything they show comes from the keyed API. The files
come from this package (no CDN), under a Content-Security-Policy that lets a page load
nothing from another host."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ... import __version__
from ...errors import NotFoundError
from ...ingest.formats import BY_SUFFIX
from ...settings import CONSOLE_SCRIPT, PROJECT_NAME
from ...ui import STATIC_DIR
from ..deps import QueryCaller, ServicesDep

UI_PATH = "/ui"
# 'self' only: a page that tried to load a font, script or style from elsewhere is refused
# by the browser itself. Inline styles are allowed for the eval report (its own <style>).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated (ETag) on each load: a new release's files are picked up at once.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


class _UiFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


@router.get(UI_PATH)
def ui_root() -> RedirectResponse:
    return RedirectResponse(f"{UI_PATH}/", status_code=308)


@router.get(f"{UI_PATH}/config.json")
def ui_config(services: ServicesDep, request: Request) -> dict[str, object]:
    """What the page needs before it has a key: names, whether keys are needed, limits."""
    settings = services.settings
    return {
        "project": PROJECT_NAME,
        "version": __version__,
        "keys_required": not request.app.state.authenticator.development,
        "max_upload_files": settings.max_upload_files,
        "max_file_bytes": settings.max_file_bytes,
        "suffixes": sorted(BY_SUFFIX),
    }


@router.get(f"{UI_PATH}/eval-report")
def eval_report(services: ServicesDep, caller: QueryCaller) -> HTMLResponse:
    """The latest gate report (`eval` writes it), read-only, for any key with query scope:
    it describes the deployment's quality, not a tenant's documents."""
    path = services.settings.eval_report_dir / "report.html"
    if not path.is_file():
        raise NotFoundError(
            f"No eval report yet: `make eval` (or `{CONSOLE_SCRIPT} eval`) runs the golden set "
            f"and writes it to {path}."
        )
    # Shown in a sandboxed frame by the app; opened directly, it runs no script either.
    headers = {**_HEADERS, "Content-Security-Policy": f"{CSP}; sandbox"}
    return HTMLResponse(path.read_text(encoding="utf-8"), headers=headers)


def install_ui(app: FastAPI) -> None:
    """The routes above, then the files (a mount matches every path under /ui)."""
    app.include_router(router)
    app.mount(UI_PATH, _UiFiles(directory=STATIC_DIR, html=True), name="ui")
