"""Image planes in patient space and a painter's canvas on them.

A ``Plane`` is one image: the centre of its first pixel, the row and column direction cosines
(DICOM ImageOrientationPatient order: ``row_dir`` runs along a row, i.e. with the column index;
``col_dir`` runs down a column, with the row index) and the pixel spacing. The anatomy bends only
in the sagittal plane, so a plane is either sagittal (normal along x) or has its rows along x
(axial and coronal, tilted about x). Coordinates are then kept as broadcastable arrays: ``(R, C)``
for ``y``/``z`` with a scalar ``x`` on sagittal planes, and ``(R, 1)`` ``y``/``z`` with a ``(1, C)``
``x`` otherwise, which keeps per-structure work small.

Structures are painted in order onto three arrays (tissue class, structure label and abnormality
index); a later structure overwrites an earlier one, and painting is limited to the rectangle that
a structure's bounding sphere covers on the plane.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np

from models.phantom.anatomy import Anatomy


@dataclass(frozen=True)
class Plane:
    """One image plane.

    Attributes:
        origin: Centre of pixel (row 0, column 0), mm (LPS).
        row_dir: Unit vector along a row (increasing column index).
        col_dir: Unit vector down a column (increasing row index).
        spacing: ``(row spacing, column spacing)`` in mm, as DICOM PixelSpacing: the distance
            between rows (along ``col_dir``) and between columns (along ``row_dir``).
        shape: ``(rows, columns)``.
    """

    origin: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: tuple[float, float]
    shape: tuple[int, int]

    @cached_property
    def normal(self) -> np.ndarray:
        """Unit normal ``row_dir x col_dir``."""
        r, c = self.row_dir, self.col_dir
        return np.array(
            [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]]
        )

    def shifted(self, distance: float) -> Plane:
        """The same plane moved ``distance`` mm along its normal."""
        return Plane(
            self.origin + distance * self.normal,
            self.row_dir,
            self.col_dir,
            self.spacing,
            self.shape,
        )

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable ``x, y, z`` arrays of the pixel centres.

        Raises:
            ValueError: if the plane is neither sagittal nor has its rows along x.
        """
        rows, cols = self.shape
        i = np.arange(rows, dtype=np.float64)[:, None] * self.spacing[0]
        j = np.arange(cols, dtype=np.float64)[None, :] * self.spacing[1]
        o, r, c = self.origin, self.row_dir, self.col_dir
        if abs(abs(self.normal[0]) - 1.0) < 1e-6:
            x = np.full((1, 1), o[0])
            return x, o[1] + i * c[1] + j * r[1], o[2] + i * c[2] + j * r[2]
        if abs(abs(r[0]) - 1.0) < 1e-6:
            return o[0] + j * r[0], o[1] + i * c[1], o[2] + i * c[2]
        raise ValueError("plane must be sagittal or have its rows along the x axis")


@dataclass(frozen=True)
class PlaneCoords:
    """Broadcastable pixel coordinates of a plane and their curve frames.

    Attributes:
        x: LR position relative to the midline.
        y: AP position (LPS).
        z: Cranio-caudal position (LPS).
        s: Arc length on the spine centreline.
        n: Posterior offset from the spine centreline.
        body_n: Posterior offset from the body axis (skin and fat).
        canal_centre: Bony canal centre offset of the nearest centreline sample.
        canal_ap: Bony canal AP radius there.
        canal_lat: Bony canal LR radius there.
        half_depth: Vertebral body half-depth there.
        width: Vertebral body width there.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    s: np.ndarray
    n: np.ndarray
    body_n: np.ndarray
    canal_centre: np.ndarray
    canal_ap: np.ndarray
    canal_lat: np.ndarray
    half_depth: np.ndarray
    width: np.ndarray


def plane_coords(plane: Plane, anatomy: Anatomy, reuse: PlaneCoords | None = None) -> PlaneCoords:
    """Coordinates of ``plane``'s pixels; ``reuse`` supplies ``y``/``z`` frames of a parallel
    sagittal plane with the same in-plane grid (only ``x`` differs), which saves most of the work.

    Raises:
        ValueError: if the plane orientation is not supported (see ``Plane.coordinates``).
    """
    x, y, z = plane.coordinates()
    x = (x - anatomy.x_mid).astype(np.float32)
    if (
        reuse is not None
        and x.size == 1
        and reuse.x.size == 1
        and reuse.y.shape == y.shape
        and np.allclose(
            [reuse.y.flat[0], reuse.y.flat[-1], reuse.z.flat[0], reuse.z.flat[-1]],
            [y.flat[0], y.flat[-1], z.flat[0], z.flat[-1]],
            atol=1e-4,
        )
    ):
        return replace(reuse, x=x)
    line = anatomy.centreline
    s, n, idx = line.frame(y, z)
    _, body_n, _ = anatomy.body_axis.frame(y, z)

    def f32(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32)

    return PlaneCoords(
        x,
        f32(y),
        f32(z),
        f32(s),
        f32(n),
        f32(body_n),
        *(f32(getattr(line, k)[idx]) for k in _TUBE_PROPERTIES),
    )


_TUBE_PROPERTIES = ("canal_centre", "canal_ap", "canal_lat", "half_depth", "width")


@dataclass
class View:
    """The part of a canvas under one structure, with coordinates cropped to it."""

    rows: slice
    cols: slice
    coords: PlaneCoords

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the cropped region."""
        return (self.rows.stop - self.rows.start, self.cols.stop - self.cols.start)

    @property
    def x(self) -> np.ndarray:
        """LR position relative to the midline."""
        return self.coords.x

    @property
    def y(self) -> np.ndarray:
        """AP position."""
        return self.coords.y

    @property
    def z(self) -> np.ndarray:
        """Cranio-caudal position."""
        return self.coords.z

    @property
    def s(self) -> np.ndarray:
        """Arc length on the spine centreline."""
        return self.coords.s

    @property
    def n(self) -> np.ndarray:
        """Posterior offset from the spine centreline."""
        return self.coords.n


class Canvas:
    """Tissue, label and abnormality arrays for one plane, painted structure by structure."""

    def __init__(self, plane: Plane, coords: PlaneCoords) -> None:
        """Start an empty (air) canvas on ``plane`` with pixel coordinates ``coords``."""
        self.plane = plane
        self.coords = coords
        self.tissue = np.zeros(plane.shape, dtype=np.uint8)
        self.label = np.zeros(plane.shape, dtype=np.uint8)
        self.abnormality = np.zeros(plane.shape, dtype=np.uint8)

    def full(self) -> View:
        """A view of the whole plane."""
        rows, cols = self.plane.shape
        return self._crop(slice(0, rows), slice(0, cols))

    def view(self, centre: np.ndarray, radius: float) -> View | None:
        """The rectangle covering the sphere ``(centre, radius)``, or None if it misses the plane.

        ``centre`` is ``(x, y, z)`` in patient coordinates.
        """
        return self.view_points(np.asarray(centre, dtype=np.float64)[None, :], radius)

    def view_points(self, points: np.ndarray, margin: float) -> View | None:
        """The rectangle covering every point of ``points`` (``(k, 3)``) grown by ``margin`` mm.

        Points farther than ``margin`` from the plane are ignored; None if all are.
        """
        p = self.plane
        d = np.asarray(points, dtype=np.float64) - p.origin
        near = np.abs(d @ p.normal) < margin
        if not near.any():
            return None
        ic = (d[near] @ p.col_dir) / p.spacing[0]
        jc = (d[near] @ p.row_dir) / p.spacing[1]
        r0 = max(int(np.floor(ic.min() - margin / p.spacing[0])), 0)
        r1 = min(int(np.ceil(ic.max() + margin / p.spacing[0])) + 1, p.shape[0])
        c0 = max(int(np.floor(jc.min() - margin / p.spacing[1])), 0)
        c1 = min(int(np.ceil(jc.max() + margin / p.spacing[1])) + 1, p.shape[1])
        if r0 >= r1 or c0 >= c1:
            return None
        return self._crop(slice(r0, r1), slice(c0, c1))

    def _crop(self, rows: slice, cols: slice) -> View:
        def cut(a: np.ndarray) -> np.ndarray:
            return a[
                rows if a.shape[0] > 1 else slice(None), cols if a.shape[1] > 1 else slice(None)
            ]

        c = self.coords
        cropped = PlaneCoords(*(cut(getattr(c, f.name)) for f in fields(PlaneCoords)))
        return View(rows, cols, cropped)

    def paint(
        self,
        view: View,
        mask: np.ndarray,
        tissue: int,
        label: int | None = None,
        abnormality: int = 0,
    ) -> None:
        """Set ``tissue`` (and ``label`` unless None, and ``abnormality``) where ``mask`` holds.

        ``mask`` must broadcast to ``view.shape``.
        """
        m = np.broadcast_to(mask, view.shape)
        if not m.any():
            return
        self.tissue[view.rows, view.cols][m] = tissue
        if label is not None:
            self.label[view.rows, view.cols][m] = label
        self.abnormality[view.rows, view.cols][m] = abnormality
