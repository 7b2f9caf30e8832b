"""From painted tissue to MR images: partial volume, texture, k-space truncation, coil bias,
motion ghosts and Rician noise.

Each slice is painted on ``subsamples`` planes spread across its thickness; the magnitude signal
of each tissue (``tissues.signal_lut``) is averaged over them (partial volume). Labels and
abnormality masks come from the centre plane. The image is then low-passed in k-space to the
acquired matrix (``ACQUIRED_FRACTION`` of the displayed one), which blurs edges and rings
(Gibbs) as a real reconstruction does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft
from scipy.ndimage import gaussian_filter

from models.phantom.anatomy import Anatomy
from models.phantom.canvas import Canvas, Plane, plane_coords
from models.phantom.pathology import LevelPathology
from models.phantom.scene import paint_scene
from models.phantom.tissues import TEXTURE

MAX_VALUE = 4095  # 12-bit images, as most MR scanners store them
ACQUIRED_FRACTION = 0.8  # acquired / displayed matrix, as AcquisitionMatrix states
TEXTURE_GRAIN_MM = 1.5


@dataclass(frozen=True)
class RenderedStack:
    """Painted tissue of a slice stack.

    Attributes:
        tissue: ``(slices, subsamples, rows, cols)`` tissue classes.
        labels: ``(slices, rows, cols)`` structure labels of the centre planes.
        abnormality: ``(slices, rows, cols)`` abnormality index (0 none, else 1-based in the
            label scheme's order).
        depth: ``(slices, rows, cols)`` distance (mm) in front of the posterior skin, for the
            receive coil profile.
        texture: ``(slices, rows, cols)`` multiplicative tissue heterogeneity (about 1), shared
            by every sequence imaging this stack.
    """

    tissue: np.ndarray
    labels: np.ndarray
    abnormality: np.ndarray
    depth: np.ndarray
    texture: np.ndarray


def render_stack(
    planes: Sequence[Plane],
    thickness: float,
    subsamples: int,
    anatomy: Anatomy,
    pathology: Mapping[str, LevelPathology],
    rng: np.random.Generator,
) -> RenderedStack:
    """Paint every slice on ``subsamples`` planes across its thickness.

    ``rng`` draws the tissue texture.

    Raises:
        ValueError: if ``subsamples`` is not a positive odd number (the centre plane gives labels).
    """
    if subsamples < 1 or subsamples % 2 == 0:
        raise ValueError("subsamples must be a positive odd number")
    rows, cols = planes[0].shape
    tissue = np.zeros((len(planes), subsamples, rows, cols), dtype=np.uint8)
    labels = np.zeros((len(planes), rows, cols), dtype=np.uint8)
    abnormality = np.zeros_like(labels)
    depth = np.zeros((len(planes), rows, cols), dtype=np.float32)
    offsets = ((np.arange(subsamples) + 0.5) / subsamples - 0.5) * thickness
    coords = None
    for k, plane in enumerate(planes):
        for j, offset in enumerate(offsets):
            sub = plane.shifted(float(offset))
            coords = plane_coords(sub, anatomy, coords)
            canvas = Canvas(sub, coords)
            paint_scene(canvas, anatomy, pathology)
            tissue[k, j] = canvas.tissue
            if j == subsamples // 2:
                labels[k] = canvas.label
                abnormality[k] = canvas.abnormality
                skin = np.maximum(anatomy.outline.skin_n - coords.body_n, 0.0)
                depth[k] = np.broadcast_to(skin, (rows, cols))
    # Pixels coarser than the grain average it out: less texture, never finer than a pixel.
    spacing = planes[0].spacing[0]
    grain = max(TEXTURE_GRAIN_MM / spacing, 0.7)
    field = gaussian_filter(
        rng.standard_normal((len(planes), rows, cols), dtype=np.float32), (0.0, grain, grain)
    )
    field /= float(field.std()) or 1.0
    scale = min(1.0, TEXTURE_GRAIN_MM / spacing)
    amplitude = scale * TEXTURE.astype(np.float32)[tissue[:, subsamples // 2]]
    texture = np.clip(1.0 + amplitude * field, 0.5, 1.5)
    return RenderedStack(tissue, labels, abnormality, depth, texture)


def _truncate_kspace(signal: np.ndarray, fraction: float) -> np.ndarray:
    """Keep the central ``fraction`` of k-space along both image axes (short cosine taper)."""
    rows, cols = signal.shape[1:]
    spectrum = fft.rfft2(signal, axes=(1, 2), workers=1)

    def window(freq: np.ndarray) -> np.ndarray:
        edge = 0.5 * fraction
        t = np.clip((np.abs(freq) - 0.9 * edge) / (0.1 * edge), 0.0, 1.0)
        return (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)

    spectrum *= window(np.fft.fftfreq(rows))[None, :, None]
    spectrum *= window(np.fft.rfftfreq(cols))[None, None, :]
    return fft.irfft2(spectrum, s=(rows, cols), axes=(1, 2), workers=1).astype(np.float32)


def form_image(
    stack: RenderedStack,
    lut: np.ndarray,
    rng: np.random.Generator,
    *,
    noise_fraction: float,
    bias_strength: float,
    ghosting: float,
    phase_axis: int,
    contrast_gamma: float = 1.0,
) -> np.ndarray:
    """Turn a painted stack into a ``(slices, rows, cols)`` uint16 magnitude image.

    Args:
        stack: Painted tissue.
        lut: Signal per tissue class.
        rng: Random source (noise, bias variation, ghost period).
        noise_fraction: Noise sigma relative to bright tissue.
        bias_strength: Depth of the posterior coil's sensitivity fall-off (0 = flat).
        ghosting: Amplitude of motion ghosts along the phase axis (0 = none).
        phase_axis: Image axis (0 rows, 1 columns) of the phase encoding.
        contrast_gamma: Exponent of the contrast curve applied to the scaled signal (1 = none).

    Returns:
        The image, scaled to at most ``MAX_VALUE``.
    """
    signal = lut.astype(np.float32)[stack.tissue].mean(axis=1, dtype=np.float32)
    signal = _truncate_kspace(signal * stack.texture, ACQUIRED_FRACTION)
    falloff = float(rng.uniform(110.0, 200.0))
    coil = (1.0 - bias_strength) + bias_strength * np.exp(-stack.depth / np.float32(falloff))
    tilt = np.linspace(-1.0, 1.0, signal.shape[1], dtype=np.float32)[None, :, None]
    signal = signal * coil * (1.0 + 0.08 * float(rng.standard_normal()) * tilt)
    if ghosting > 0:
        period = signal.shape[1 + phase_axis] // int(rng.integers(3, 7))
        ghost = np.zeros_like(signal)
        for m, sign in ((1, 1), (1, -1), (2, 1), (2, -1)):
            ghost += np.roll(signal, sign * m * period, axis=1 + phase_axis) * ghosting / m
        signal = signal + ghost
    reference = float(np.percentile(signal[:, ::3, ::3], 99.5)) or 1.0
    target = float(rng.uniform(1200.0, 2600.0))
    signal *= np.float32(target / reference)
    if contrast_gamma != 1.0:
        signal = np.float32(target) * (np.maximum(signal, 0.0) / np.float32(target)) ** np.float32(
            contrast_gamma
        )
    noise = np.float32(noise_fraction * target)
    real = signal + noise * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = noise * rng.standard_normal(signal.shape, dtype=np.float32)
    magnitude = np.sqrt(real * real + imag * imag)
    return np.clip(np.rint(magnitude), 0, MAX_VALUE).astype(np.uint16)
