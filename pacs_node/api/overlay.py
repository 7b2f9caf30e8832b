"""PNG preview of a job's SEG over its source slice, so an admin can check a result by eye.

The slice shown is the source instance with the most segmented pixels. Rendering (windowing,
colours, structure names, the "AI generated" banner) is the key-image renderer's.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom import dcmread

from pacs_node.results.key_images import render


class OverlayUnavailableError(LookupError):
    """The SEG or its source images are not on this node (e.g. the spool was cleaned)."""


def render_overlay_png(seg_path: Path, source_path: Callable[[str], Path | None]) -> bytes:
    """Render the SEG at ``seg_path`` over the source slice it covers most.

    Args:
        seg_path: The encoded DICOM Segmentation.
        source_path: SOP Instance UID -> file of that source instance, or None if unknown.

    Returns:
        PNG bytes.

    Raises:
        OverlayUnavailableError: if the SEG file or the chosen source file is missing.
        ValueError: if the SEG cannot be read or references no source instance.
    """
    if not seg_path.is_file():
        raise OverlayUnavailableError("the SEG file is not in the spool")
    seg = hd.seg.segread(seg_path)
    uids = [sop for _, _, sop in seg.get_source_image_uids()]
    if not uids:
        raise ValueError("the SEG references no source instance")
    segments = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    best = int(np.argmax((segments > 0).sum(axis=(1, 2))))
    path = source_path(uids[best])
    if path is None or not path.is_file():
        raise OverlayUnavailableError("the source instance is not in the spool")
    pixels = dcmread(path).pixel_array
    names = {n: seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()}
    caption = f"slice {best + 1}/{len(uids)}"
    rgb, _ = render(pixels, segments[best], names, caption)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
