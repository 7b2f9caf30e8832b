"""PNG preview of a job's SEG over its source slice, so an admin can check a result by eye.

The slice shown is the source instance with the most segmented pixels. Rendering (windowing,
colours, structure names, the "AI generated" banner) is the key-image renderer's; beside it, a
legend gives each structure's colour and, when the job's findings are given, the disc levels
with an abnormality (ringed in red on the image too) and which.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread

from pacs_node.results.key_images import render
from pacs_node.results.palette import structure_colour

LEGEND_WIDTH = 260
FINDING_COLOUR = (255, 60, 60)


class OverlayUnavailableError(LookupError):
    """The SEG or its source images are not on this node (e.g. the spool was cleaned)."""


def render_overlay_png(
    seg_path: Path,
    source_path: Callable[[str], Path | None],
    findings: Mapping[str, Mapping[str, bool]] | None = None,
) -> bytes:
    """Render the SEG at ``seg_path`` over the source slice it covers most, with a legend.

    Args:
        seg_path: The encoded DICOM Segmentation.
        source_path: SOP Instance UID -> file of that source instance, or None if unknown.
        findings: Disc level -> abnormality -> present (the job's SR), to mark; None for none.

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
    rgb, factor = render(pixels, segments[best], names, caption)
    present = {
        level: [key.replace("_", " ") for key, found in calls.items() if found]
        for level, calls in (findings or {}).items()
    }
    image = _with_legend(Image.fromarray(rgb), segments[best], factor, names, present)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _with_legend(
    image: Image.Image,
    labels: np.ndarray,
    factor: int,
    names: Mapping[int, str],
    findings: Mapping[str, list[str]],
) -> Image.Image:
    """The rendered slice with a ring around each level that has a finding, and a legend."""
    draw = ImageDraw.Draw(image)
    for value, name in names.items():
        rows, cols = np.nonzero(labels == value)
        if findings.get(name) and rows.size:
            x, y = (cols.mean() + 0.5) * factor, (rows.mean() + 0.5) * factor
            radius = max(8.0, (cols.max() - cols.min() + 1) * factor * 0.7)
            box = (x - radius, y - radius * 0.6, x + radius, y + radius * 0.6)
            draw.ellipse(box, outline=FINDING_COLOUR, width=3)
    size = max(11, image.height // 40)
    font = ImageFont.load_default(size=size)
    line = size + 6
    lines = sum(1 + len(findings.get(n, [])) for n in names.values()) + 3
    panel = Image.new("RGB", (LEGEND_WIDTH, max(image.height, lines * line + 8)), (20, 20, 20))
    pen = ImageDraw.Draw(panel)
    y = 6
    pen.text((8, y), "structures", fill=(255, 255, 255), font=font)
    y += line
    for value, name in sorted(names.items()):
        pen.rectangle((8, y + 2, 8 + size, y + 2 + size), fill=structure_colour(value))
        marked = bool(findings.get(name))
        pen.text(
            (16 + size, y), name, fill=FINDING_COLOUR if marked else (230, 230, 230), font=font
        )
        y += line
        for finding in findings.get(name, []):
            pen.text((24 + size, y), finding, fill=FINDING_COLOUR, font=font)
            y += line
    if findings:
        pen.text((8, y + 4), "red: level with a finding", fill=FINDING_COLOUR, font=font)
    combined = Image.new("RGB", (image.width + panel.width, max(image.height, panel.height)))
    combined.paste(image, (0, 0))
    combined.paste(panel, (image.width, 0))
    return combined
