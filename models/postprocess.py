"""Post-processing of label maps and measurements derived from them.

- Largest connected component per class (3D).
- Level labelling by counting: disc instances are found, vertebrae and discs are numbered by
  the disc mid-planes below them, and the count is anchored where it agrees most with the
  network's own labels (:func:`relabel_levels`). This fixes level shifts and swaps, the
  dominant error, and names levels the network rarely saw (T9, T10); where the count is blind
  (the posterior elements, a disc missed at the top), the network's own names stand.
- Disc height from the mask: area of the largest disc cross-section / its long-axis length.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def largest_components(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """Keep only the largest 3D connected component of each label value.

    Raises:
        Nothing.
    """
    out = labels.copy()
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        components, count = ndimage.label(mask)
        if count > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[mask & (components != int(np.argmax(sizes)) + 1)] = 0
    return out


def superior_coordinate(
    shape: tuple[int, int], orientation: tuple[float, ...], spacing: tuple[float, float]
) -> np.ndarray:
    """Head-ward (patient +z, LPS) coordinate in mm of every pixel of a (rows, cols) slice.

    Raises:
        ValueError: if ``orientation`` does not have 6 values.
    """
    if len(orientation) != 6:
        raise ValueError("orientation must have 6 direction cosines")
    rows = np.arange(shape[0])[:, None] * spacing[0] * orientation[5]
    cols = np.arange(shape[1])[None, :] * spacing[1] * orientation[2]
    return rows + cols


MIN_DISC_VOXELS = 8
#: Share of sacrum labels under the lowest disc that anchors the count there (tuned on validation
#: phantoms: where the network splits the sacrum between S and L5, the share is about one half).
SACRUM_ANCHOR_SHARE = 0.4
#: Share of the vertebral bodies the network names as the count does, from which its own names
#: of the posterior elements (beside the discs) are trusted over the count.
NETWORK_TRUST = 0.8
#: Quantile of the top counted vertebra's height that a name one level higher in the top slot
#: must lie above (median) to stand (on validation phantoms, 0.8 to 0.95 gave the same; 0.5
#: kept fewer corners out).
TOP_ABOVE_SHARE = 0.8


@dataclass(frozen=True)
class DiscPlane:
    """One disc instance as a line in the sagittal plane: (row, col) mm coordinates.

    Attributes:
        centre: Centroid (2,).
        normal: Unit normal pointing head-ward (2,): the disc's thin axis.
        voxels: Number of voxels in the instance.
        extent: (min, max) mm of the disc's voxels along its long axis, from the centre.
    """

    centre: np.ndarray
    normal: np.ndarray
    voxels: int
    extent: tuple[float, float]

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Head-ward distance in mm of (N, 2) points from the disc's mid-plane."""
        return (points - self.centre) @ self.normal

    def along(self, points: np.ndarray) -> np.ndarray:
        """Coordinate in mm of (N, 2) points along the disc's long axis, from its centre."""
        return (points - self.centre) @ _long_axis(self.normal)


def _long_axis(normal: np.ndarray) -> np.ndarray:
    """The in-plane direction perpendicular to a disc's ``normal``."""
    return np.array([-normal[1], normal[0]])


def superior_direction(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit head-ward direction in (row, col) coordinates of a slice (LPS +z).

    Raises:
        ValueError: if ``orientation`` does not have 6 values or the slice is axial.
    """
    if len(orientation) != 6:
        raise ValueError("orientation must have 6 direction cosines")
    up = np.array([orientation[5], orientation[2]], dtype=float)
    norm = float(np.linalg.norm(up))
    if norm < 1e-3:
        raise ValueError("the slices do not contain the head-feet axis")
    return up / norm


def _plane(points: np.ndarray, up: np.ndarray) -> DiscPlane:
    centre = points.mean(0)
    normal = up.copy()
    if len(points) >= 4:
        normal = np.linalg.eigh(np.cov((points - centre).T))[1][:, 0]
        normal = normal if normal @ up >= 0 else -normal
    along = (points - centre) @ _long_axis(normal)
    return DiscPlane(centre, normal, len(points), (float(along.min()), float(along.max())))


def _cranial_edge(shape: tuple[int, int], spacing: tuple[float, float], up: np.ndarray) -> float:
    """Head-ward coordinate (mm, along ``up``) beyond which a point touches the top of the slice:
    the most head-ward pixel centre, less a pixel and a half."""
    corners = np.array(
        [[r * spacing[0], c * spacing[1]] for r in (0, shape[0] - 1) for c in (0, shape[1] - 1)]
    )
    return float((corners @ up).max()) - 1.5 * max(spacing)


def _component_pixels(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, cols) of each 3D connected component of ``mask``, in label order, each in raster
    order: one pass over the volume, however many components there are."""
    components, count = ndimage.label(mask)
    _, rows, cols = np.nonzero(components)
    ids = components[components > 0]
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(1, count + 2))
    return [
        (rows[order[start:stop]], cols[order[start:stop]])
        for start, stop in itertools.pairwise(bounds)
    ]


def disc_planes(
    disc_mask: np.ndarray,
    spacing: tuple[float, float],
    up: np.ndarray,
    expected: int,
    min_fraction: float = 0.4,
    same_level_mm: float = 8.0,
) -> list[DiscPlane]:
    """Disc instances of a (S, R, C) mask, caudal first.

    Noise is a 3D component smaller than ``MIN_DISC_VOXELS`` or than ``min_fraction`` of the
    median of the ``expected`` largest components (the most discs there can be), so many small
    fragments do not lower the bar; a component that reaches the head-ward edge of the field of
    view is a disc cut by it and only needs ``MIN_DISC_VOXELS``. Components whose centroids lie
    within ``same_level_mm`` along the lower one's normal are one disc seen in parts.

    Raises:
        Nothing.
    """
    parts = [
        np.stack([rows * spacing[0], cols * spacing[1]], axis=1)
        for rows, cols in _component_pixels(disc_mask)
    ]
    largest = sorted(len(p) for p in parts)[-expected:]
    if not largest or largest[-1] < MIN_DISC_VOXELS:
        return []
    floor = max(MIN_DISC_VOXELS, min_fraction * float(np.median(largest)))
    edge = _cranial_edge(disc_mask.shape[1:], spacing, up)
    kept = [
        p
        for p in parts
        if len(p) >= floor or (len(p) >= MIN_DISC_VOXELS and float((p @ up).max()) >= edge)
    ]
    parts = sorted(kept, key=lambda p: float(p.mean(0) @ up))
    merged: list[np.ndarray] = []
    for points in parts:
        if merged:
            below = _plane(merged[-1], up)
            if abs(float(below.signed_distance(points.mean(0, keepdims=True))[0])) < same_level_mm:
                merged[-1] = np.concatenate([merged[-1], points])
                continue
        merged.append(points)
    return [_plane(points, up) for points in merged]


def _beside_nearest_disc(
    points: np.ndarray, distance: np.ndarray, planes: list[DiscPlane]
) -> np.ndarray:
    """Which of the (N, 2) points lie beyond either end of the disc whose mid-plane is nearest
    (``distance``: (N, P) signed distances to the planes): the posterior elements, where a
    disc plane extended backwards is no border between levels."""
    nearest = np.abs(distance).argmin(1)
    beside = np.zeros(len(points), dtype=bool)
    for number, plane in enumerate(planes):
        chosen = nearest == number
        along = plane.along(points[chosen])
        beside[chosen] = (along < plane.extent[0]) | (along > plane.extent[1])
    return beside


def _higher_names_kept(
    own: np.ndarray,
    counted: np.ndarray,
    above: np.ndarray,
    top: np.ndarray,
    beside: np.ndarray,
    height: np.ndarray,
) -> np.ndarray:
    """Which vertebra voxels keep the network's name (``own``) where it is one level higher
    (``above``) than the count (``counted``): in the ``top`` slot, if the network also sees the
    counted vertebra there, and more of it (else the network shifted the top vertebra itself),
    and the upper name lies above it (the median ``height`` above the ``TOP_ABOVE_SHARE``
    quantile of the counted vertebra's; else it is a corner of a vertebra cut by the edge of the
    field of view); ``beside`` the discs, if the network names the vertebral bodies as the count
    does."""
    higher = (own == above) & (above > 0)
    keep = top & higher
    lower = top & (own == counted)
    if keep.any() and (
        lower.sum() < keep.sum()
        or np.median(height[keep]) <= np.quantile(height[lower], TOP_ABOVE_SHARE)
    ):
        keep[:] = False
    body = ~beside
    if body.any() and (counted[body] == own[body]).mean() >= NETWORK_TRUST:
        keep |= beside & higher
    return keep


def relabel_levels(
    labels: np.ndarray,
    vertebra_values: list[int],
    disc_values: list[int],
    orientation: tuple[float, ...],
    spacing: tuple[float, float],
) -> np.ndarray:
    """Instance-aware level labelling: count disc levels and anchor the count on the labels.

    Discs are found as instances (:func:`disc_planes`); every vertebra voxel gets the slot of the
    number of disc mid-planes below it, every disc voxel the nearest disc. The count starts at
    the sacrum when most of what lies under the lowest disc is labelled sacrum (so a ladder the
    network shifted by one level as a whole is put right); otherwise the slot -> level offset is
    the one that agrees with most of the network's own labels. Levels the network never names
    (such as T9 and T10 at the top of the field of view) still get their names. Above the
    highest disc found, where the network sees two vertebrae (the counted one and, less of it,
    the one above, lying above it), the upper one keeps its name: the disc between them was
    missed (cut by the edge of the field of view or too thin to find), and counting alone would
    merge the two.
    Behind the discs (beyond either end of the nearest one), where a spinous process slopes
    below the plane of the disc under its vertebra, a voxel the network names one level higher
    than the count keeps that name, as long as the network names at least ``NETWORK_TRUST`` of
    the vertebral bodies as the count does.

    Args:
        labels: (S, R, C) label map of sagittal slices.
        vertebra_values: vertebra label values, cranio-caudal (the sacrum last).
        disc_values: disc label values, cranio-caudal (the disc above the sacrum last).
        orientation: ImageOrientationPatient of the slices.
        spacing: (row, col) pixel spacing in mm.

    Returns:
        The relabelled map; unchanged when no disc is found. Voxels counted beyond the named
        levels become background.

    Raises:
        ValueError: if ``orientation`` is invalid or axial.
    """
    up = superior_direction(orientation)
    is_vertebra = np.isin(labels, vertebra_values)
    is_disc = np.isin(labels, disc_values)
    planes = disc_planes(is_disc, spacing, up, expected=len(disc_values))
    if not planes:
        return labels.copy()
    centres = np.stack([p.centre for p in planes])
    normals = np.stack([p.normal for p in planes])

    def slots(mask: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        index = np.nonzero(mask)
        points = np.stack([index[1] * spacing[0], index[2] * spacing[1]], axis=1)
        distance = np.einsum("npk,pk->np", points[:, None, :] - centres[None], normals)
        return index, points, distance

    vertebra_index, vertebra_points, vertebra_distance = slots(is_vertebra)
    vertebra_slot = (vertebra_distance > 0).sum(1)
    disc_index, _, disc_distance = slots(is_disc)
    disc_slot = np.abs(disc_distance).argmin(1)
    vertebra_lookup = np.array([0, *reversed(vertebra_values)])
    disc_lookup = np.array([0, *reversed(disc_values)])

    def named(slot: np.ndarray, offset: int, lookup: np.ndarray) -> np.ndarray:
        position = slot + offset + 1
        return np.where(
            (position >= 1) & (position < len(lookup)), lookup[position.clip(0, len(lookup) - 1)], 0
        )

    def agreement(offset: int) -> int:
        return int(
            (named(vertebra_slot, offset, vertebra_lookup) == labels[vertebra_index]).sum()
            + (named(disc_slot, offset, disc_lookup) == labels[disc_index]).sum()
        )

    below_lowest = vertebra_slot == 0
    sacrum_below = labels[vertebra_index][below_lowest] == vertebra_values[-1]
    if below_lowest.any() and sacrum_below.mean() >= SACRUM_ANCHOR_SHARE:
        offset = 0  # the sacrum is under the lowest disc: count from it
    else:
        offset = max(range(-len(planes), len(vertebra_values)), key=agreement)
    counted = named(vertebra_slot, offset, vertebra_lookup)
    own = labels[vertebra_index]
    keep_own = _higher_names_kept(
        own,
        counted,
        named(vertebra_slot + 1, offset, vertebra_lookup),
        vertebra_slot == len(planes),
        _beside_nearest_disc(vertebra_points, vertebra_distance, planes),
        vertebra_distance[:, -1],  # height above the highest disc's mid-plane
    )
    out = labels.copy()
    out[vertebra_index] = np.where(keep_own, own, counted)
    out[disc_index] = named(disc_slot, offset, disc_lookup)
    return out


def disc_height_mm(mask: np.ndarray, spacing: tuple[float, float]) -> float:
    """Disc height on the slice with the largest disc area: area / long-axis length.

    Args:
        mask: (S, R, C) bool mask of one disc.
        spacing: (row, col) pixel spacing in mm.

    Returns:
        The height in mm, or NaN if the disc is absent or too small to measure.
    """
    areas = mask.sum((1, 2))
    if areas.max(initial=0) < 3:
        return float("nan")
    rows, cols = np.nonzero(mask[int(np.argmax(areas))])
    points = np.stack([rows * spacing[0], cols * spacing[1]], axis=1)
    points = points - points.mean(0)
    major_std = float(np.sqrt(np.linalg.eigvalsh(np.cov(points.T))[-1]))
    length = np.sqrt(12.0) * major_std  # a uniform bar of length L has std L / sqrt(12)
    area = float(areas.max()) * spacing[0] * spacing[1]
    return float(area / max(length, 1e-6))
