"""The dashboard: static HTML, CSS and JavaScript under ``app/api/ui/static``, no build step.

The files are public (they hold no data); the page itself asks for an API
key when the server wants one and sends it on every request it makes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from app.api.errors import not_found

STATIC_DIR = Path(__file__).resolve().parents[1] / "ui" / "static"
MEDIA_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# Only the files shipped with the package are served; a request names one of these, never a path.
ASSETS = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in MEDIA_TYPES}
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui")
def dashboard() -> FileResponse:
    return FileResponse(ASSETS["index.html"], media_type=MEDIA_TYPES[".html"], headers=NO_CACHE)


@router.get("/ui/{asset}")
def dashboard_asset(asset: str) -> FileResponse:
    path = ASSETS.get(asset)
    if path is None:
        raise not_found("dashboard file", asset)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)
