"""The OHIF viewer at ``/viewer/``, reading the node's own DICOMweb on the same origin.

OHIF's prebuilt app (``scripts/setup`` puts its ``dist/`` folder in ``vendor/ohif/dist``;
``PACS_NODE_VIEWER_DIR``) is built for the site root: the node serves it under ``/viewer/`` by
rewriting the root paths of ``index.html``, of its style sheet and of the bundles that set
webpack's public path, answers OHIF's client-side routes (``/viewer/viewer?StudyInstanceUIDs=``)
with ``index.html``, and writes ``app-config.js`` itself: one DICOMweb data source, the node's
``/dicom-web``. The browser authenticates with the session cookie of ``POST
/api/viewer-session`` (see ``auth``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, RedirectResponse

from pacs_node.api.auth import SESSION_COOKIE, viewer_bearer_token
from pacs_node.api.context import ApiContext, get_context
from pacs_node.api.dicomweb.context import PREFIX as DICOMWEB

MOUNT = "/viewer"
PUBLIC_URL = MOUNT + "/"
JAVASCRIPT = "text/javascript"
NO_CACHE = {"Cache-Control": "no-cache"}
_WEBPACK_PUBLIC_PATH = b'__webpack_require__.p = "/";'
_WEBPACK_PUBLIC_PATH_HERE = f'__webpack_require__.p = "{PUBLIC_URL}";'.encode()
_ROOT_PATHS = re.compile(r'\b(src|href|content)="/(?!/)')
_CSS_ROOT_URLS = re.compile(rb"url\(/(?!/)")

APP_CONFIG = f"""\
/* Written by pacs-node: OHIF reads the node's DICOMweb on the same origin, with the session
   cookie of POST /api/viewer-session. */
(() => {{
  const dicomWeb = `${{window.location.origin}}{DICOMWEB}`;
  window.config = {{
    routerBasename: '{MOUNT}',
    extensions: [],
    modes: [],
    customizationService: {{ 'ohif.tours': {{ $set: [] }} }},
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: {{ option: 'never' }},
    maxNumRequests: {{ interaction: 100, thumbnail: 5, prefetch: 10 }},
    defaultDataSourceName: 'pacs-node',
    dataSources: [
      {{
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'pacs-node',
        configuration: {{
          friendlyName: 'pacs-node',
          name: 'pacs-node',
          qidoRoot: dicomWeb,
          wadoRoot: dicomWeb,
          wadoUriRoot: dicomWeb,
          qidoSupportsIncludeField: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          supportsReject: false,
          dicomUploadEnabled: false,
          staticWado: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          bulkDataURI: {{ enabled: true }},
          omitQuotationForMultipartRequest: true,
        }},
      }},
    ],
  }};
}})();
"""

router = APIRouter(tags=["viewer"])
Context = Annotated[ApiContext, Depends(get_context)]


@router.post(
    "/api/viewer-session",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Open a viewer session",
)
def open_viewer_session(
    request: Request, token: Annotated[str, Depends(viewer_bearer_token)]
) -> Response:
    """Set the session cookie the OHIF viewer reads DICOMweb with (HttpOnly, SameSite=Strict):
    it holds the bearer token (viewer or admin), and admits only reads of viewer routes."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get(MOUNT, include_in_schema=False)
def viewer_root() -> RedirectResponse:
    """The app's root, with its slash (OHIF's relative paths need it)."""
    return RedirectResponse(PUBLIC_URL)


@router.get(PUBLIC_URL + "app-config.js", include_in_schema=False)
def app_config(context: Context) -> Response:
    """OHIF's configuration: the node's DICOMweb as its only data source."""
    _installed(context)
    return Response(APP_CONFIG, media_type=JAVASCRIPT, headers=NO_CACHE)


@router.get(PUBLIC_URL + "{path:path}", include_in_schema=False)
def viewer_file(path: str, context: Context) -> Response:
    """A file of the app (public paths rewritten), or ``index.html`` for a client-side route."""
    dist = _installed(context)
    file = (dist / path).resolve()
    if not file.is_relative_to(dist):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file in the viewer")
    index = dist / "index.html"
    if file != index:
        if file.is_file():
            stat = file.stat()
            rewritten = _rewritten(file, stat.st_mtime_ns, stat.st_size)
            if rewritten is None:
                return FileResponse(file)
            media_type = JAVASCRIPT if file.suffix == ".js" else "text/css"
            return Response(rewritten, media_type=media_type)
        if PurePosixPath(path).suffix:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file in the viewer")
    stat = index.stat()
    return Response(
        _index(index, stat.st_mtime_ns, stat.st_size), media_type="text/html", headers=NO_CACHE
    )


def _installed(context: ApiContext) -> Path:
    """The app's folder.

    Raises:
        HTTPException: 404 when OHIF is not installed there.
    """
    dist = context.settings.viewer_dir.resolve()
    if not (dist / "index.html").is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "the OHIF viewer is not installed: run scripts/setup (it needs npm), or set "
            "PACS_NODE_VIEWER_DIR to the dist folder of @ohif/app",
        )
    return dist


@lru_cache(maxsize=4)
def _index(path: Path, mtime_ns: int, size: int) -> bytes:
    """``index.html`` with its root paths (links, scripts, ``PUBLIC_URL``) under ``/viewer/``."""
    html = path.read_text(encoding="utf-8")
    html = html.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PUBLIC_URL}"')
    return _ROOT_PATHS.sub(rf'\1="{PUBLIC_URL}', html).encode()


@lru_cache(maxsize=256)
def _rewritten(path: Path, mtime_ns: int, size: int) -> bytes | None:
    """A script that sets webpack's public path, or a style sheet with ``url(/...)``, rewritten
    to ``/viewer/``; None for any other file (cached by modification time and size)."""
    if path.suffix == ".js":
        content = path.read_bytes()
        if _WEBPACK_PUBLIC_PATH in content:
            return content.replace(_WEBPACK_PUBLIC_PATH, _WEBPACK_PUBLIC_PATH_HERE)
    elif path.suffix == ".css":
        content = path.read_bytes()
        if _CSS_ROOT_URLS.search(content):
            return _CSS_ROOT_URLS.sub(b"url(" + PUBLIC_URL.encode(), content)
    return None
