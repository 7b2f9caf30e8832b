"""A preview picture of a phantom study: mid-sagittal T1, T2, and T2 with the label overlay."""

from __future__ import annotations

import colorsys

import numpy as np

from models.phantom.study import PhantomStudy

#: Colour of voxels inside any abnormality mask on the overlay panel.
ABNORMALITY_RGB = (255, 40, 40)


def label_palette(values: int = 256) -> np.ndarray:
    """``(values, 3)`` uint8 colours: neighbouring label values get well separated hues."""
    palette = np.zeros((values, 3), dtype=np.uint8)
    for v in range(1, values):
        hue = (v * 0.381966) % 1.0  # golden-ratio steps
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
        palette[v] = (int(r * 255), int(g * 255), int(b * 255))
    return palette


def _gray(image: np.ndarray) -> np.ndarray:
    high = float(np.percentile(image, 99.5)) or 1.0
    return (np.clip(image.astype(np.float32) / high, 0.0, 1.0) * 255).astype(np.uint8)


def preview_image(study: PhantomStudy, alpha: float = 0.45) -> np.ndarray:
    """An RGB ``(rows, 3 * cols, 3)`` uint8 picture of the middle sagittal slice.

    Panels: SAG_T1, SAG_T2, and SAG_T2 with structure labels blended in (abnormality voxels in red).

    Raises:
        KeyError: if the study has no SAG_T1 or SAG_T2 series.
    """
    t1, t2 = study.get("SAG_T1"), study.get("SAG_T2")
    k = t2.pixels.shape[0] // 2
    g1, g2 = _gray(t1.pixels[k]), _gray(t2.pixels[k])
    panels = [np.repeat(g[..., None], 3, axis=2) for g in (g1, g2)]
    overlay = panels[1].astype(np.float32)
    if t2.labels is not None:
        labels = t2.labels[k]
        colours = label_palette()[labels].astype(np.float32)
        mask = labels > 0
        overlay[mask] = (1 - alpha) * overlay[mask] + alpha * colours[mask]
    for m in t2.abnormality_masks.values():
        hit = m[k]
        overlay[hit] = 0.4 * overlay[hit] + 0.6 * np.array(ABNORMALITY_RGB, dtype=np.float32)
    panels.append(overlay.astype(np.uint8))
    return np.concatenate(panels, axis=1)
