"""DICOMweb on the node's API (``/dicom-web``): STOW-RS in, QIDO-RS and WADO-RS out.

Modules, one job each: ``multipart`` the message codec, ``context`` what the routes need,
``catalog`` the query layer over the tables, ``attributes`` headers and metadata read from
files, ``matching`` QIDO-RS query parameters, ``frames`` pixel frames, and the routes ``stow``,
``qido`` and ``wado``.
"""

from __future__ import annotations

from fastapi import APIRouter

from pacs_node.api.dicomweb import qido, stow, wado
from pacs_node.api.dicomweb.context import PREFIX, install_context

router = APIRouter(prefix=PREFIX, tags=["DICOMweb"])
router.include_router(stow.router)
router.include_router(qido.router)
router.include_router(wado.router)

__all__ = ["install_context", "router"]
