"""A seeded geometric model of the lower thoracic and lumbar spine (T7 to the sacral tip).

Everything lives in patient coordinates (LPS, mm). The spine bends only in the sagittal plane, so
each vertebra has a rigid frame given by its body centre ``(y, z)`` and an axis angle ``phi``: the
cranial axis is ``(-sin phi, cos phi)`` in ``(y, z)`` and the posterior normal ``(cos phi, sin
phi)``; ``phi > 0`` tilts the axis anteriorly, as the sacrum does. The chain is built from the S1
endplate upwards (discs carry the lordotic wedge angles, bodies are rigid) and downwards through the
five fused sacral segments. A smooth centreline through the body and disc centres gives tubular
structures (canal, cord, muscles, skin) a continuous frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d

from models.labels import load_label_scheme

# Free vertebrae, cranio-caudal. T7 and T8 are drawn (a wide field of view shows them) but are
# not in the label scheme, so they stay background in the labels.
FREE_VERTEBRAE = ("T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
# Typical adult sizes (mm) per vertebra T7..L5: body height, depth (AP), width (LR).
_HEIGHT = (19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 27.0, 26.0)
_DEPTH = (26.0, 27.0, 28.0, 29.0, 30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 35.0)
_WIDTH = (31.0, 32.0, 34.0, 36.0, 38.0, 40.0, 42.0, 44.0, 46.0, 48.0, 50.0)
_CANAL_AP = (7.5, 7.5, 7.5, 7.5, 7.5, 8.0, 8.0, 8.0, 8.5, 8.5, 8.5)  # bony canal radii
_CANAL_LAT = (7.5, 7.5, 8.0, 8.0, 8.5, 9.0, 10.0, 10.5, 11.0, 11.5, 12.0)
# Discs T7/T8 .. L5/S1: height between endplate rims (mm) and share of the lumbar lordosis
# (negative: thoracic kyphosis).
_DISC_HEIGHT = (4.0, 4.2, 4.5, 5.0, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5, 10.0)
_LORDOSIS_SHARE = (-0.07, -0.07, -0.06, -0.05, -0.03, 0.02, 0.08, 0.13, 0.18, 0.25, 0.36)
# Sacral segments S1..S5: height, depth, width, and the extra anterior tilt below each one (deg).
_SACRAL = (
    (26.0, 40.0, 50.0, 8.0),
    (20.0, 32.0, 40.0, 10.0),
    (16.0, 24.0, 30.0, 12.0),
    (12.0, 17.0, 20.0, 12.0),
    (9.0, 11.0, 12.0, 0.0),
)
MAX_AXIS_ANGLE = np.deg2rad(80.0)
MAX_FRAME_ANGLE = np.deg2rad(55.0)


@dataclass(frozen=True)
class Segment:
    """One vertebra or fused sacral segment with its rigid frame and sizes (mm).

    Attributes:
        name: Structure name ("T7" .. "L5", or "S" for every sacral segment).
        label: Label value of the structure in ``labels.json`` (0 for T7 and T8).
        centre: Body centre ``(y, z)``.
        phi: Axis angle (rad).
        height: Body height along the axis.
        depth: Body AP depth.
        width: Body LR width.
        concavity: Endplate concavity at the centre.
        canal_ap: Bony canal AP radius.
        canal_lat: Bony canal LR radius.
        arch_thickness: Thickness of pedicles and laminae.
        spinous_length: Spinous process length behind the lamina.
        spinous_height: Spinous process height.
        spinous_slope: Caudal drop of the spinous process per mm of length.
        transverse_length: Transverse process length.
        sacral: 0 for a free vertebra, 1..5 for sacral segments.
    """

    name: str
    label: int
    centre: tuple[float, float]
    phi: float
    height: float
    depth: float
    width: float
    concavity: float
    canal_ap: float
    canal_lat: float
    arch_thickness: float
    spinous_length: float
    spinous_height: float
    spinous_slope: float
    transverse_length: float
    sacral: int

    @property
    def canal_centre(self) -> float:
        """Offset of the bony canal centre behind the body centre, along the posterior normal."""
        return self.depth / 2 + self.canal_ap


@dataclass(frozen=True)
class Disc:
    """An intervertebral disc between ``segments[upper]`` and ``segments[lower]``.

    Attributes:
        name: Level name ("T7/T8" .. "L5/S1"), or "" for vestigial sacral discs.
        label: Label value (the sacrum's for vestigial sacral discs, 0 above T9).
        upper: Index of the segment above.
        lower: Index of the segment below.
        centre: Centre ``(y, z)`` between the endplate rims.
        phi: Mid axis angle (rad).
        rim_height: Height between the endplate rims at the centre.
        depth: AP depth.
        width: LR width.
    """

    name: str
    label: int
    upper: int
    lower: int
    centre: tuple[float, float]
    phi: float
    rim_height: float
    depth: float
    width: float


@dataclass(frozen=True)
class AxisLine:
    """A curve in the sagittal plane, sampled densely with increasing ``z``.

    ``s`` is arc length (mm, increasing cranially), ``phi`` the axis angle at each sample.
    """

    z: np.ndarray
    y: np.ndarray
    phi: np.ndarray
    s: np.ndarray

    def frame(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map points to ``(s, n, index)``: arc length, posterior offset and curve sample index.

        A first-order projection on the curve sample at the same ``z``; accurate near the curve.
        """
        zc = np.clip(z, self.z[0], self.z[-1])
        idx = np.clip(np.searchsorted(self.z, zc), 0, self.z.size - 1)
        phi = self.phi[idx]
        dy = y - self.y[idx]
        return self.s[idx] - dy * np.sin(phi), dy * np.cos(phi), idx


@dataclass(frozen=True)
class Centreline(AxisLine):
    """The spine curve through body and disc centres, with tube properties per sample.

    The properties are interpolated from the segments: bony canal centre offset and radii, body
    half-depth and width.
    """

    canal_centre: np.ndarray
    canal_ap: np.ndarray
    canal_lat: np.ndarray
    half_depth: np.ndarray
    width: np.ndarray


@dataclass(frozen=True)
class BodyOutline:
    """Skin and subcutaneous fat, as a superellipse in the body axis frame ``(n, x)``."""

    skin_n: float
    ap: float
    half_width: float
    fat_posterior: float
    fat_anterior: float
    fat_lateral: float


@dataclass(frozen=True)
class Anatomy:
    """A complete spine: segments cranio-caudal (T7 first, sacral tip last), discs, soft tissue.

    Attributes:
        x_mid: LR position of the midline.
        segments: Vertebrae T7..L5 then sacral segments S1..S5.
        discs: Discs cranio-caudal; the nine named ones first, then vestigial sacral discs.
        centreline: The smooth spine curve.
        body_axis: A gentler curve (half the spine's curvature, extended far beyond it) that
            frames the skin, fat and body cavity.
        outline: Skin and subcutaneous fat.
        level_s: Arc length on the centreline of each free vertebra's centre, of S1 (as "S") and
            of S3 ("sacral_canal_end", where the drawn sacral canal stops).
        conus_s: Arc length of the conus medullaris tip.
        sac_end_s: Arc length where the thecal sac ends (about S2).
        transitional: "none", "sacralization" (of L5) or "lumbarization" (of S1).
        lordosis_deg: L1-S1 lordosis.
        sacral_slope_deg: Sacral slope.
    """

    x_mid: float
    segments: tuple[Segment, ...]
    discs: tuple[Disc, ...]
    centreline: Centreline
    body_axis: AxisLine
    outline: BodyOutline
    level_s: Mapping[str, float]
    conus_s: float
    sac_end_s: float
    transitional: str
    lordosis_deg: float
    sacral_slope_deg: float

    def segment(self, name: str) -> Segment:
        """Return the free vertebra called ``name`` (or S1 for "S").

        Raises:
            KeyError: if there is no such segment.
        """
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(name)

    def disc(self, name: str) -> Disc:
        """Return the disc at level ``name``.

        Raises:
            KeyError: if there is no such disc.
        """
        for disc in self.discs:
            if disc.name == name:
                return disc
        raise KeyError(name)


def axis(phi: float) -> np.ndarray:
    """Cranial unit axis ``(y, z)`` for axis angle ``phi``."""
    return np.array([-np.sin(phi), np.cos(phi)])


def normal(phi: float) -> np.ndarray:
    """Posterior unit normal ``(y, z)`` for axis angle ``phi``."""
    return np.array([np.cos(phi), np.sin(phi)])


def build_anatomy(
    rng: np.random.Generator,
    transitional_probability: float,
    disc_height_factor: Mapping[str, float],
) -> Anatomy:
    """Sample a spine: sizes, lordosis, transitional anatomy, soft tissue; build its geometry.

    Args:
        rng: Random source (consumed in a fixed order, so a seed gives one spine).
        transitional_probability: Chance of sacralization or lumbarization.
        disc_height_factor: Disc height multiplier per level name (degeneration), default 1.

    Returns:
        The anatomy.

    Raises:
        ValueError: if ``transitional_probability`` is outside [0, 1].
    """
    if not 0.0 <= transitional_probability <= 1.0:
        raise ValueError("transitional_probability must lie in [0, 1]")
    scheme = load_label_scheme()
    scale = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    lordosis = float(np.clip(rng.normal(45.0, 9.0), 20.0, 70.0))
    slope = float(np.clip(0.7 * lordosis + rng.normal(3.0, 4.0), 20.0, 55.0))
    transitional = "none"
    if rng.random() < transitional_probability:
        transitional = "sacralization" if rng.random() < 0.5 else "lumbarization"
    x_mid = float(rng.uniform(-4.0, 4.0))
    s1_top = np.array([rng.uniform(-10.0, 10.0), rng.uniform(-150.0, -110.0)])

    free = _free_segment_sizes(rng, scale, transitional)
    disc_names = [
        f"{a}/{b}" for a, b in zip(FREE_VERTEBRAE, (*FREE_VERTEBRAE[1:], "S1"), strict=True)
    ]
    heights, wedges = [], []
    for i, name in enumerate(disc_names):
        h = _DISC_HEIGHT[i] * scale * rng.uniform(0.9, 1.1) * disc_height_factor.get(name, 1.0)
        w = _LORDOSIS_SHARE[i] * lordosis + rng.normal(0.0, 1.0)
        heights.append(h)
        wedges.append(np.deg2rad(w))
    if transitional == "sacralization":
        heights[-1] = min(heights[-1], rng.uniform(2.5, 4.0))
    disc_names[-1] = "L5/S1"

    segs: list[Segment] = []
    discs: list[Disc] = []
    # Upwards from the S1 endplate: disc, then the vertebra above it, L5 first.
    phi = np.deg2rad(slope)
    top = s1_top.copy()
    upward: list[tuple[Segment, Disc]] = []
    for i in reversed(range(len(FREE_VERTEBRAE))):
        mid = phi - wedges[i] / 2
        dcentre = top + axis(mid) * heights[i] / 2
        top = top + axis(mid) * heights[i]
        phi -= wedges[i]
        size = free[i]
        centre = top + axis(phi) * size["height"] / 2
        top = top + axis(phi) * size["height"]
        seg = _segment(FREE_VERTEBRAE[i], _label(FREE_VERTEBRAE[i]), centre, phi, size)
        disc = Disc(
            name=disc_names[i],
            label=_label(disc_names[i]),
            upper=i,
            lower=i + 1,
            centre=(float(dcentre[0]), float(dcentre[1])),
            phi=float(mid),
            rim_height=float(heights[i]),
            depth=(size["depth"] + (free[i + 1]["depth"] if i + 1 < len(free) else 40 * scale)) / 2,
            width=(size["width"] + (free[i + 1]["width"] if i + 1 < len(free) else 50 * scale)) / 2,
        )
        upward.append((seg, disc))
    for seg, disc in reversed(upward):
        segs.append(seg)
        discs.append(disc)
    # Downwards through the sacrum.
    sac_label = scheme.by_name("S").value
    phi = np.deg2rad(slope)
    bottom = s1_top.copy()
    for k, (h, d, w, tilt) in enumerate(_SACRAL):
        h, d, w = h * scale, d * scale, w * scale
        centre = bottom - axis(phi) * h / 2
        bottom = bottom - axis(phi) * h
        size = {
            "height": h,
            "depth": d,
            "width": w,
            "concavity": 0.8,
            "canal_ap": max(6.0 - 1.2 * k, 2.5) * scale,
            "canal_lat": max(11.0 - 2.0 * k, 3.0) * scale,
            "arch_thickness": 6.0 * scale,
            "spinous_length": max(8.0 - 2.0 * k, 1.0) * scale,
            "spinous_height": h,
            "spinous_slope": 0.0,
            "transverse_length": 0.0,
        }
        segs.append(_segment("S", sac_label, centre, phi, size, sacral=k + 1))
        if k + 1 < len(_SACRAL):
            gap = 4.5 * scale if (k == 0 and transitional == "lumbarization") else 1.5
            new_phi = min(phi + np.deg2rad(tilt), MAX_AXIS_ANGLE)
            mid = (phi + new_phi) / 2
            dcentre = bottom - axis(mid) * gap / 2
            bottom = bottom - axis(mid) * gap
            phi = new_phi
            idx = len(segs) - 1
            discs.append(
                Disc(
                    name="",
                    label=sac_label,
                    upper=idx,
                    lower=idx + 1,
                    centre=(float(dcentre[0]), float(dcentre[1])),
                    phi=float(mid),
                    rim_height=float(gap),
                    depth=(d + _SACRAL[k + 1][1] * scale) / 2,
                    width=(w + _SACRAL[k + 1][2] * scale) / 2,
                )
            )
    segments = tuple(segs)
    centreline = _centreline(segments, tuple(discs))
    lumbar_tips = [
        seg.canal_centre + seg.canal_ap + seg.arch_thickness + seg.spinous_length
        for seg in segments
        if seg.name.startswith("L")
    ]
    outline = BodyOutline(
        skin_n=float(np.mean(lumbar_tips) + rng.uniform(8.0, 35.0)),
        ap=float(rng.uniform(190.0, 270.0) * scale),
        half_width=float(rng.uniform(140.0, 180.0) * scale),
        fat_posterior=float(rng.uniform(8.0, 30.0)),
        fat_anterior=float(rng.uniform(10.0, 35.0)),
        fat_lateral=float(rng.uniform(10.0, 35.0)),
    )
    s_of = {seg.name: _s_at(centreline, seg.centre) for seg in segments if seg.sacral <= 1}
    s_of["sacral_canal_end"] = _s_at(centreline, segments[len(FREE_VERTEBRAE) + 2].centre)
    l1 = segments[FREE_VERTEBRAE.index("L1")]
    conus = s_of["L1"] - 0.3 * l1.height + rng.normal(0.0, 10.0)
    conus = float(np.clip(conus, s_of["L2"], s_of["T12"]))
    sac_end = _s_at(centreline, segments[len(FREE_VERTEBRAE) + 1].centre)
    return Anatomy(
        x_mid=x_mid,
        segments=segments,
        discs=tuple(discs),
        centreline=centreline,
        body_axis=_body_axis(segments),
        outline=outline,
        level_s=s_of,
        conus_s=conus,
        sac_end_s=float(sac_end),
        transitional=transitional,
        lordosis_deg=lordosis,
        sacral_slope_deg=slope,
    )


def _label(name: str) -> int:
    """Label value of a structure, 0 (background) if the scheme does not name it."""
    try:
        return load_label_scheme().by_name(name).value
    except KeyError:
        return 0


def _free_segment_sizes(
    rng: np.random.Generator, scale: float, transitional: str
) -> list[dict[str, float]]:
    sizes = []
    for i, name in enumerate(FREE_VERTEBRAE):
        lumbar = name.startswith("L")
        sizes.append(
            {
                "height": _HEIGHT[i] * scale * rng.uniform(0.95, 1.05),
                "depth": _DEPTH[i] * scale * rng.uniform(0.95, 1.05),
                "width": _WIDTH[i] * scale * rng.uniform(0.95, 1.05),
                "concavity": rng.uniform(1.0, 2.0),
                "canal_ap": _CANAL_AP[i] * scale * rng.uniform(0.9, 1.1),
                "canal_lat": _CANAL_LAT[i] * scale * rng.uniform(0.9, 1.1),
                "arch_thickness": (6.5 if lumbar else 5.5) * scale,
                "spinous_length": (26.0 if lumbar else 32.0) * scale * rng.uniform(0.9, 1.1),
                "spinous_height": (16.0 if lumbar else 9.0) * scale,
                "spinous_slope": 0.15 if lumbar else 0.75,
                "transverse_length": (22.0 if lumbar else 18.0) * scale,
            }
        )
    if transitional == "sacralization":
        sizes[-1]["transverse_length"] = 34.0 * scale
    return sizes


def _segment(
    name: str,
    label: int,
    centre: np.ndarray,
    phi: float,
    size: Mapping[str, float],
    sacral: int = 0,
) -> Segment:
    return Segment(
        name=name,
        label=label,
        centre=(float(centre[0]), float(centre[1])),
        phi=float(phi),
        height=float(size["height"]),
        depth=float(size["depth"]),
        width=float(size["width"]),
        concavity=float(size["concavity"]),
        canal_ap=float(size["canal_ap"]),
        canal_lat=float(size["canal_lat"]),
        arch_thickness=float(size["arch_thickness"]),
        spinous_length=float(size["spinous_length"]),
        spinous_height=float(size["spinous_height"]),
        spinous_slope=float(size["spinous_slope"]),
        transverse_length=float(size["transverse_length"]),
        sacral=sacral,
    )


def _centreline(segments: tuple[Segment, ...], discs: tuple[Disc, ...]) -> Centreline:
    """Fit a spline through body centres, caudal to cranial, and sample it every 0.5 mm."""
    order = sorted(
        [(s.centre, s) for s in segments] + [(d.centre, d) for d in discs],
        key=lambda item: item[0][1],
    )
    pts = np.array([c for c, _ in order])
    top = segments[0]
    pts = np.vstack([pts, np.array(top.centre) + axis(top.phi) * 60.0])
    t = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    spline = CubicSpline(t, pts, axis=0)
    ts = np.arange(0.0, t[-1], 0.5)
    yz = spline(ts)
    d = spline(ts, 1)
    phi = np.arctan2(-d[:, 0], d[:, 1])
    # Keep the part above the lower sacrum's curl (steep or forward-curling: z must increase and
    # the first-order frame needs a moderate tilt).
    dz = np.concatenate([np.diff(yz[:, 1]), [1.0]])
    bad = np.nonzero((dz <= 0) | (phi > MAX_FRAME_ANGLE))[0]
    start = int(bad[-1] + 1) if bad.size else 0
    yz, phi, ts = yz[start:], phi[start:], ts[start:]
    # Continue 30 cm below the sacral tip, turning to vertical, so tissue there has a sane frame.
    tail_phi = phi[0] * np.exp(-np.arange(1, 601) * 0.5 / 120.0)
    steps = np.stack([-np.sin(tail_phi), np.cos(tail_phi)], axis=1) * 0.5
    tail = yz[0] - np.cumsum(steps, axis=0)
    yz = np.vstack([tail[::-1], yz])
    phi = np.concatenate([tail_phi[::-1], phi])
    ts = np.concatenate([ts[0] - 0.5 * np.arange(600, 0, -1), ts])

    def prop(getter: str) -> np.ndarray:
        knots_t = []
        vals = []
        for c, item in order:
            if isinstance(item, Segment):
                value = getattr(item, getter) if getter != "canal_centre" else item.canal_centre
            else:
                up, lo = segments[item.upper], segments[item.lower]
                if getter == "canal_centre":
                    value = (up.canal_centre + lo.canal_centre) / 2
                else:
                    value = (getattr(up, getter) + getattr(lo, getter)) / 2
            knots_t.append(c[1])
            vals.append(value)
        return np.interp(yz[:, 1], np.array(knots_t), np.array(vals))

    return Centreline(
        z=yz[:, 1].copy(),
        y=yz[:, 0].copy(),
        phi=phi,
        s=ts - ts[0],
        canal_centre=prop("canal_centre"),
        canal_ap=prop("canal_ap"),
        canal_lat=prop("canal_lat"),
        half_depth=prop("depth") / 2,
        width=prop("width"),
    )


def _body_axis(segments: tuple[Segment, ...]) -> AxisLine:
    """A line through T7..S1 body centres with half their lordosis, smoothed, 40 cm beyond."""
    free = sorted((s for s in segments if s.sacral <= 1), key=lambda s: s.centre[1])
    zc = np.array([s.centre[1] for s in free])
    yc = np.array([s.centre[0] for s in free])
    slope, intercept = np.polyfit(zc, yc, 1)
    z = np.arange(zc[0] - 400.0, zc[-1] + 400.0, 1.0)
    dev = np.interp(z, zc, yc - (slope * zc + intercept))
    y = gaussian_filter1d(slope * z + intercept + 0.5 * dev, 25.0, mode="nearest")
    phi = -np.arctan(np.gradient(y, z))
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(y), np.diff(z)))])
    return AxisLine(z=z, y=y, phi=phi, s=s)


def _s_at(line: Centreline, yz: tuple[float, float]) -> float:
    s, _, _ = line.frame(np.array([yz[0]]), np.array([yz[1]]))
    return float(s[0])
