"""``/docs``: Swagger UI over ``/openapi.json``, its script and style served from ``app/api/ui/swagger``, not a CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.api.errors import not_found

SWAGGER_DIR = Path(__file__).resolve().parents[1] / "ui" / "swagger"
ASSETS_PATH = "/docs/assets"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# Only the shipped files are served; a request names one of these, never a path.
ASSETS = {path.name: path for path in SWAGGER_DIR.iterdir() if path.suffix in MEDIA_TYPES}
# The files change only with the package version, so browsers may keep them for a day.
CACHE = {"Cache-Control": "public, max-age=86400"}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="recomb API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        # No validator badge: it would send the schema's URL to an outside validator.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(f"{ASSETS_PATH}/{{asset}}")
def swagger_asset(asset: str) -> FileResponse:
    path = ASSETS.get(asset)
    if path is None:
        raise not_found("docs file", asset)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=CACHE)
