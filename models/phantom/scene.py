"""Paint the anatomy and its abnormalities onto a canvas, back to front.

Order matters: soft tissue, then the canal and its contents, then bone (which clips anything that
strayed into it), then discs, then lesions (Schmorl's nodes, herniations), which may indent the
thecal sac. Rigid structures are evaluated in their segment's frame ``(u, v, x)``: ``u`` along the
cranial axis, ``v`` posterior, ``x`` to the patient's left of the midline.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.labels import load_label_scheme
from models.phantom.anatomy import Anatomy, Disc, Segment
from models.phantom.canvas import Canvas, View
from models.phantom.pathology import LevelPathology
from models.phantom.tissues import Tissue

CANAL_LABEL = load_label_scheme().by_name("canal").value
ABNORMALITY_INDEX = {a.key: i + 1 for i, a in enumerate(load_label_scheme().abnormalities)}
_MODIC = {1: Tissue.MODIC1, 2: Tissue.MODIC2, 3: Tissue.MODIC3}
_BONE = (Tissue.CORTEX, Tissue.MARROW)


def paint_scene(canvas: Canvas, anatomy: Anatomy, pathology: Mapping[str, LevelPathology]) -> None:
    """Paint everything onto ``canvas``.

    Args:
        canvas: Target canvas (its arrays are overwritten).
        anatomy: The spine.
        pathology: Level name -> abnormalities to draw (levels missing are drawn normal).
    """
    _soft_tissue(canvas, anatomy)
    _canal(canvas, anatomy)
    for seg in anatomy.segments:
        _segment(canvas, anatomy, seg)
    for disc in anatomy.discs:
        path = pathology.get(disc.name)
        if path is not None and path.modic:
            _modic(canvas, anatomy, disc, path)
    for disc in anatomy.discs:
        _disc(canvas, anatomy, disc, pathology.get(disc.name))
    for disc in anatomy.discs:
        path = pathology.get(disc.name)
        if path is not None:
            _lesions(canvas, anatomy, disc, path)


# --- frames -------------------------------------------------------------------------------------


def _frame(view: View, centre: tuple[float, float], phi: float) -> tuple[np.ndarray, np.ndarray]:
    dy, dz = view.y - centre[0], view.z - centre[1]
    c, s = np.cos(phi), np.sin(phi)
    return -dy * s + dz * c, dy * c + dz * s


def _point(
    anatomy: Anatomy, centre: tuple[float, float], phi: float, u: float, v: float
) -> np.ndarray:
    """Patient ``(x, y, z)`` of frame coordinates ``(u, v)`` on the midline."""
    c, s = np.cos(phi), np.sin(phi)
    return np.array(
        [anatomy.x_mid, centre[0] - u * s + v * c, centre[1] + u * c + v * s], dtype=np.float64
    )


def _endplate(seg: Segment, r: np.ndarray, inset: float = 0.0) -> np.ndarray:
    """Half-height of a body at normalised radius ``r``: concave endplates, rounded rims."""
    rc = np.minimum(r, 1.0)
    rim = np.clip((rc - 0.8) / 0.2, 0.0, 1.0) ** 2
    return seg.height / 2 - inset - seg.concavity * (1.0 - rc**2) - 2.0 * rim


def _body_radius(seg: Segment, v: np.ndarray, x: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    a, b = seg.depth / 2 - shrink, seg.width / 2 - shrink
    # A slightly flattened posterior wall: the body is kidney-shaped in cross-section.
    a_eff = np.where(v > 0, a * (1.0 - 0.08 * np.clip(1.0 - (x / b) ** 2, 0.0, 1.0)), a)
    return np.sqrt((v / a_eff) ** 2 + (x / b) ** 2)


# --- soft tissue ----------------------------------------------------------------------------------


def _soft_tissue(canvas: Canvas, anatomy: Anatomy) -> None:
    o = anatomy.outline
    view = canvas.full()
    c = view.coords
    bn, n, x, s = c.body_n, c.n, c.x, c.s
    n0 = o.skin_n - o.ap / 2
    ax = np.abs(x)
    body = _superellipse(bn - n0, x, o.ap / 2, o.half_width)
    canvas.paint(view, body, Tissue.FAT, 0)
    inner_ap = o.ap / 2 - (o.fat_posterior + o.fat_anterior) / 2
    inner_n0 = n0 + (o.fat_anterior - o.fat_posterior) / 2
    inner_w = o.half_width - o.fat_lateral
    inner = _superellipse(bn - inner_n0, x, inner_ap, inner_w)
    canvas.paint(view, inner, Tissue.ORGAN)
    half_depth, width = c.half_depth, c.width
    _bowel(canvas, view, inner & (n < -half_depth - 15.0))
    nc = c.canal_centre
    n_back = o.skin_n - o.fat_posterior - 2.0
    retro_c = (nc + n_back) / 2 - 10.0
    retro_n = (n_back - nc) / 2 + 35.0
    retro = ((n - retro_c) / retro_n) ** 2 + (x / (width / 2 + 80.0)) ** 2 <= 1.0
    canvas.paint(view, inner & retro, Tissue.FAT)
    s_top, s_l4, s_l5 = anatomy.level_s["T12"], anatomy.level_s["L4"], anatomy.level_s["L5"]
    above_sacrum = s > anatomy.level_s["S"]
    # Erector spinae and multifidus either side of the spinous processes; quadratus lumborum.
    half_n = np.maximum((n_back - nc) / 2 + 6.0, 8.0)
    centre_n = n_back - half_n
    for side in (-1.0, 1.0):
        erector = ((x - side * 36.0) / 34.0) ** 2 + ((n - centre_n) / half_n) ** 2 <= 1.0
        canvas.paint(view, inner & erector, Tissue.MUSCLE)
        qx = side * (width / 2 + 48.0)
        quadratus = ((x - qx) / 20.0) ** 2 + ((n - nc + 6.0) / 13.0) ** 2 <= 1.0
        canvas.paint(view, inner & quadratus & above_sacrum & (s < s_top), Tissue.MUSCLE)
    near = above_sacrum & (ax < width / 2 + 40.0)
    shell = (n / (half_depth + 2.0)) ** 2 + (x / (width / 2 + 2.0)) ** 2 <= 1.0
    prevert = inner & near & shell & (n < 0)
    canvas.paint(view, prevert, Tissue.FAT)
    grow = np.clip((s_top - s) / max(s_top - s_l5, 1.0), 0.0, 1.0)
    r_psoas = 4.0 + 20.0 * grow
    for side in (-1.0, 1.0):
        cx = side * (width / 2 + r_psoas * 0.8)
        psoas = ((x - cx) / r_psoas) ** 2 + ((n + 0.15 * half_depth) / (1.1 * r_psoas)) ** 2 <= 1
        canvas.paint(view, psoas & (s < s_top + 10.0) & above_sacrum, Tissue.MUSCLE)
    for vx, vr, s_end in ((14.0, 10.0, s_l4), (-18.0, 11.0, s_l5)):
        vn = -half_depth - 3.0 - vr
        tube = ((x - vx) ** 2 + (n - vn) ** 2 <= vr**2) & (s > s_end)
        canvas.paint(view, tube, Tissue.VESSEL)
    midline = inner & (ax < 4.0) & (n > c.canal_centre + 8.0)
    canvas.paint(view, midline, Tissue.INTERSPINOUS)


def _superellipse(dn: np.ndarray, x: np.ndarray, half_ap: float, half_w: float) -> np.ndarray:
    """Inside a superellipse of exponent 3 (flatter sides than an ellipse)."""
    a = np.abs(dn) * np.float32(1.0 / half_ap)
    b = np.abs(x) * np.float32(1.0 / half_w)
    return a * a * a + b * b * b <= 1.0


def _bowel(canvas: Canvas, view: View, region: np.ndarray) -> None:
    """Bowel loops in the abdomen: fluid, gas and mesenteric fat from a few plane waves."""
    if not region.any():
        return
    c = view.coords
    field = np.zeros(view.shape, dtype=np.float32)
    for kx, ky, kz, phase in _BOWEL_WAVES:
        field += np.cos(kx * c.x + ky * c.y + kz * c.z + phase)
    canvas.paint(view, region & (field > 2.5), Tissue.FLUID)
    canvas.paint(view, region & (field < -2.9), Tissue.AIR)
    canvas.paint(view, region & (field > -0.5) & (field < -0.3), Tissue.FAT)


# Fixed wave vectors (rad/mm) and phases: bowel texture; loops are 2-5 cm across.
_BOWEL_WAVES = (
    (0.11, 0.05, 0.13, 0.3),
    (-0.07, 0.12, 0.09, 1.9),
    (0.05, -0.09, 0.16, 4.1),
    (0.14, 0.08, -0.06, 2.6),
    (-0.12, -0.04, 0.1, 5.3),
)


# --- canal ----------------------------------------------------------------------------------------


def _canal_view(canvas: Canvas, anatomy: Anatomy, margin: float) -> View | None:
    line = anatomy.centreline
    step = slice(None, None, 10)
    y = line.y[step] + line.canal_centre[step] * np.cos(line.phi[step])
    z = line.z[step] + line.canal_centre[step] * np.sin(line.phi[step])
    pts = np.stack([np.full_like(y, anatomy.x_mid), y, z], axis=1)
    return canvas.view_points(pts, margin)


def _canal(canvas: Canvas, anatomy: Anatomy) -> None:
    view = _canal_view(canvas, anatomy, 45.0)
    if view is None:
        return
    c = view.coords
    n, x, s = c.n, c.x, c.s
    nc, ra, rl = c.canal_centre, c.canal_ap, c.canal_lat
    dn = n - nc
    low = s > anatomy.level_s["sacral_canal_end"]
    foramen = low & (np.abs(x) > rl - 1) & (np.abs(x) < rl + 14.0) & (dn > -ra) & (dn < 0.7 * ra)
    canvas.paint(view, foramen, Tissue.FAT, 0)
    root = foramen & ((dn + 0.25 * ra) ** 2 <= 6.0)
    canvas.paint(view, root, Tissue.NERVE, 0)
    epidural = low & ((dn / (ra + 0.5)) ** 2 + (x / (rl + 0.5)) ** 2 <= 1.0)
    canvas.paint(view, epidural, Tissue.FAT, 0)
    flavum = (dn > ra - 1.0) & (dn < ra + 2.0) & (np.abs(x) < 0.8 * rl)
    canvas.paint(view, flavum & (s > anatomy.sac_end_s - 20), Tissue.LIGAMENT, 0)
    taper = np.sqrt(np.clip((s - anatomy.sac_end_s) / 15.0, 0.0, 1.0))
    sac_ap, sac_lat = (ra - 1.8) * taper, (rl - 1.5) * taper
    dsac = dn + 0.8
    sac = (dsac / np.maximum(sac_ap, 1e-3)) ** 2 + (x / np.maximum(sac_lat, 1e-3)) ** 2 <= 1.0
    sac &= taper > 0
    canvas.paint(view, sac, Tissue.CSF, CANAL_LABEL)
    cord_t = np.clip((s - anatomy.conus_s) / 18.0, 0.0, 1.0) ** 0.7
    cord = ((dsac - 0.5) / (3.8 * cord_t + 1e-3)) ** 2 + (x / (4.8 * cord_t + 1e-3)) ** 2 <= 1.0
    canvas.paint(view, cord & (cord_t > 0), Tissue.NERVE, CANAL_LABEL)
    cauda = sac & (s < anatomy.conus_s + 4.0)
    for k in (-2.0, -1.0, 0.0, 1.0, 2.0):
        rx = k * 0.22 * sac_lat
        rn = 0.3 * sac_ap + 0.15 * sac_ap * abs(k)
        canvas.paint(view, cauda & ((x - rx) ** 2 + (dsac - rn) ** 2 <= 1.1), Tissue.NERVE)


# --- bone -----------------------------------------------------------------------------------------


def _segment(canvas: Canvas, anatomy: Anatomy, seg: Segment) -> None:
    reach = seg.canal_ap + seg.arch_thickness + seg.spinous_length + 4.0
    lateral = (
        seg.canal_lat
        + seg.arch_thickness
        + max(seg.transverse_length, 30.0 if seg.sacral == 1 else 0)
    )
    centre = _point(anatomy, seg.centre, seg.phi, 0.0, seg.canal_centre + reach / 2 - seg.canal_ap)
    radius = float(
        np.sqrt(
            (reach / 2 + seg.canal_ap) ** 2
            + lateral**2
            + (seg.height / 2 + 12.0 + seg.spinous_slope * reach) ** 2
        )
    )
    view = canvas.view(centre, radius)
    if view is not None:
        u, v = _frame(view, seg.centre, seg.phi)
        canvas.paint(view, _posterior(seg, u, v, view.x, 0.0), Tissue.CORTEX, seg.label)
        canvas.paint(view, _posterior(seg, u, v, view.x, 1.4), Tissue.MARROW, seg.label)
    a, b = seg.depth / 2, seg.width / 2
    view = canvas.view(
        _point(anatomy, seg.centre, seg.phi, 0.0, 0.0),
        float(np.sqrt(a**2 + b**2 + seg.height**2 / 4)) + 6.0,
    )
    if view is None:
        return
    u, v = _frame(view, seg.centre, seg.phi)
    x = view.x
    r = _body_radius(seg, v, x)
    canvas.paint(view, (r <= 1.0) & (np.abs(u) <= _endplate(seg, r)), Tissue.CORTEX, seg.label)
    ri = _body_radius(seg, v, x, 1.2)
    canvas.paint(
        view, (ri <= 1.0) & (np.abs(u) <= _endplate(seg, ri, 1.4)), Tissue.MARROW, seg.label
    )
    # Basivertebral vein: a small bright notch at the middle of the posterior wall.
    if not seg.sacral:
        vein = ((u / 1.5) ** 2 + ((v - a + 2.5) / 3.0) ** 2 + (x / 2.5) ** 2 <= 1.0) & (ri <= 1.0)
        canvas.paint(view, vein, Tissue.FAT, seg.label)


def _posterior(
    seg: Segment, u: np.ndarray, v: np.ndarray, x: np.ndarray, shrink: float
) -> np.ndarray:
    """Neural arch, spinous, transverse and articular processes (``shrink`` > 0: marrow core)."""
    h, t = seg.height, seg.arch_thickness
    vc, ra, rl = seg.canal_centre, seg.canal_ap, seg.canal_lat
    dv = v - vc
    q_in = (dv / (ra + shrink)) ** 2 + (x / (rl + shrink)) ** 2
    q_out = (dv / (ra + t - shrink)) ** 2 + (x / (rl + t - shrink)) ** 2
    u_lo: float | np.ndarray
    if seg.sacral:
        u_lo, u_hi = -h / 2 - 1.0, h / 2 + 1.0
    else:
        u_lo, u_hi = -0.35 * h - 0.35 * np.maximum(dv, 0.0), 0.5 * h
    ring = (
        (q_out <= 1.0)
        & (q_in > 1.0)
        & (v > 0.3 * seg.depth)
        & (u >= u_lo + shrink)
        & (u <= u_hi - shrink)
    )
    half_w = (3.5 if seg.name.startswith("L") or seg.sacral else 2.5) - shrink
    sp_v0 = ra + t - 2.0
    sp_u = 0.05 * h - seg.spinous_slope * np.maximum(dv - sp_v0, 0.0)
    spinous = (
        (np.abs(x) <= half_w)
        & (dv >= sp_v0 - 4.0)
        & (dv <= ra + t + seg.spinous_length - shrink)
        & (np.abs(u - sp_u) <= seg.spinous_height / 2 - shrink)
    )
    ax = np.abs(x)
    out = ring | spinous
    if seg.transverse_length > 0:
        transverse = (
            (ax >= rl + 0.5 * t)
            & (ax <= rl + t + seg.transverse_length - shrink)
            & (np.abs(dv + 2.0) <= 4.0 - shrink)
            & (np.abs(u - 0.15 * h) <= 5.0 - shrink)
        )
        out |= transverse
    if not seg.sacral:
        pillar = (
            (ax >= rl - 1.0 + shrink)
            & (ax <= rl + t + 5.0 - shrink)
            & (dv >= -1.0 + shrink)
            & (dv <= ra + 1.0 - shrink)
            & (u >= -0.5 * h - 5.0 + shrink)
            & (u <= 0.5 * h + 3.0 - shrink)
            & (q_in > 1.0)
        )
        out |= pillar
    elif seg.sacral <= 2:
        ala = (
            (ax >= 0.35 * seg.width)
            & (ax <= (1.15 if seg.sacral == 1 else 0.9) * seg.width - shrink)
            & (v >= -0.4 * seg.depth + shrink)
            & (dv <= 0.5 * ra - shrink)
            & (np.abs(u) <= h / 2 + 1.0 - shrink)
        )
        out |= ala
    return out


def _modic(canvas: Canvas, anatomy: Anatomy, disc: Disc, path: LevelPathology) -> None:
    idx = ABNORMALITY_INDEX["vertebral_degeneration"]
    for k, sign in ((disc.upper, -1.0), (disc.lower, 1.0)):
        seg = anatomy.segments[k]
        view = canvas.view(
            _point(anatomy, seg.centre, seg.phi, 0.0, 0.0),
            seg.depth / 2 + seg.width / 2 + seg.height / 2,
        )
        if view is None:
            continue
        u, v = _frame(view, seg.centre, seg.phi)
        ri = _body_radius(seg, v, view.x, 1.2)
        edge = _endplate(seg, ri, 1.4)
        band = (
            (ri <= 1.0)
            & (sign * u >= edge - path.modic_depth * (1.0 - 0.5 * ri**2))
            & (sign * u <= edge)
        )
        canvas.paint(view, band, _MODIC[path.modic], seg.label, idx)
        # Anterior osteophyte at the endplate corner facing the disc.
        spur = (
            ((v + seg.depth / 2 + 1.0) / 2.5) ** 2
            + (view.x / (0.5 * seg.width)) ** 2
            + ((sign * u - seg.height / 2 + 1.0) / 2.5) ** 2
        ) <= 1.0
        canvas.paint(view, spur, Tissue.CORTEX, seg.label, idx)


# --- discs and lesions ---------------------------------------------------------------------------


def _between_endplates(anatomy: Anatomy, disc: Disc, view: View) -> np.ndarray:
    up, lo = anatomy.segments[disc.upper], anatomy.segments[disc.lower]
    u_up, v_up = _frame(view, up.centre, up.phi)
    u_lo, v_lo = _frame(view, lo.centre, lo.phi)
    below_up = u_up <= -_endplate(up, _body_radius(up, v_up, view.x))
    above_lo = u_lo >= _endplate(lo, _body_radius(lo, v_lo, view.x))
    return below_up & above_lo


def disc_height(anatomy: Anatomy, disc: Disc) -> float:
    """Height of ``disc`` at its centre (mm): rim height plus both endplate concavities."""
    up, lo = anatomy.segments[disc.upper], anatomy.segments[disc.lower]
    return disc.rim_height + up.concavity + lo.concavity


def _disc(canvas: Canvas, anatomy: Anatomy, disc: Disc, path: LevelPathology | None) -> None:
    a, b = disc.depth / 2, disc.width / 2
    hc = disc_height(anatomy, disc)
    view = canvas.view(_point(anatomy, disc.centre, disc.phi, 0.0, 0.0), float(np.hypot(a, b)) + hc)
    if view is None:
        return
    u, v = _frame(view, disc.centre, disc.phi)
    x = view.x
    r = np.sqrt((v / a) ** 2 + (x / b) ** 2)
    region = _between_endplates(anatomy, disc, view) & (r <= 1.03) & (np.abs(u) <= hc)
    canvas.paint(view, region, Tissue.ANNULUS, disc.label)
    if not disc.name:
        return
    dark = path.darkness if path is not None else 0.0
    scale = 1.0 - 0.75 * dark
    if scale < 0.3:
        return
    rn = (np.abs(v - 0.06 * a) / (0.7 * a * scale)) ** 3 + (np.abs(x) / (0.7 * b * scale)) ** 3
    nucleus = rn + (u / (0.48 * hc)) ** 2 <= 1.0
    canvas.paint(view, region & nucleus, Tissue.NUCLEUS, disc.label)
    if dark > 0.15:
        cleft = nucleus & (np.abs(u) <= 0.45) & (np.abs(v) < 0.4 * a)
        canvas.paint(view, region & cleft, Tissue.ANNULUS, disc.label)


def _lesions(canvas: Canvas, anatomy: Anatomy, disc: Disc, path: LevelPathology) -> None:
    if path.schmorl != "none":
        _schmorl(canvas, anatomy, disc, path)
    if path.herniation != "none":
        _herniation(canvas, anatomy, disc, path)


def _schmorl(canvas: Canvas, anatomy: Anatomy, disc: Disc, path: LevelPathology) -> None:
    k, sign = (disc.upper, -1.0) if path.schmorl == "upper" else (disc.lower, 1.0)
    seg = anatomy.segments[k]
    rad = path.schmorl_radius
    uc = sign * (seg.height / 2 - seg.concavity)
    vc = path.schmorl_v * seg.depth / 2
    view = canvas.view(_point(anatomy, seg.centre, seg.phi, uc, vc), rad + 3.0)
    if view is None:
        return
    u, v = _frame(view, seg.centre, seg.phi)
    idx = ABNORMALITY_INDEX["schmorl_node"]
    inside = _body_radius(seg, v, view.x) <= 1.0
    for extra, tissue, label in ((1.3, Tissue.CORTEX, seg.label), (0.0, Tissue.HERNIA, disc.label)):
        q = (
            ((u - uc) / (1.2 * rad + extra)) ** 2
            + ((v - vc) / (rad + extra)) ** 2
            + (view.x / (rad + extra)) ** 2
        )
        canvas.paint(view, (q <= 1.0) & inside & (sign * (u - uc) <= 1.0), tissue, label, idx)


def _herniation(canvas: Canvas, anatomy: Anatomy, disc: Disc, path: LevelPathology) -> None:
    a, b = disc.depth / 2, disc.width / 2
    hc = disc_height(anatomy, disc)
    size = path.hernia_size
    reach = size + abs(path.hernia_migration) + hc
    view = canvas.view(_point(anatomy, disc.centre, disc.phi, 0.0, a), reach + b)
    if view is None:
        return
    u, v = _frame(view, disc.centre, disc.phi)
    x = view.x
    r = np.sqrt((v / a) ** 2 + (x / b) ** 2)
    outside = r > 1.0
    idx = ABNORMALITY_INDEX[path.herniation]
    not_bone = ~np.isin(canvas.tissue[view.rows, view.cols], _BONE)
    if path.herniation == "disc_bulge":
        taper = np.clip(1.0 - (u / (hc / 2)) ** 2, 0.0, 1.0)
        grow = size * taper * np.clip(0.3 + 0.7 * v / a, 0.3, 1.0)
        rb = np.sqrt((v / (a + grow)) ** 2 + (x / (b + grow)) ** 2)
        mask = _between_endplates(anatomy, disc, view) & (rb <= 1.0) & outside
        canvas.paint(view, mask & not_bone, Tissue.ANNULUS, disc.label, idx)
        return
    dx = x - path.hernia_x
    if path.herniation == "disc_protrusion":
        dome = ((v - a) / size) ** 2 + (dx / 8.0) ** 2 + (u / (0.42 * hc)) ** 2 <= 1.0
        mask = dome
    else:
        um = path.hernia_migration * 0.7
        dome = ((v - a - 0.5 * size) / (0.6 * size)) ** 2 + (dx / 6.5) ** 2 + (
            (u - um) / (0.35 * hc + abs(um))
        ) ** 2 <= 1.0
        neck = ((v - a) / 3.0) ** 2 + (dx / 3.0) ** 2 + (u / (0.3 * hc)) ** 2 <= 1.0
        mask = dome | neck
    canvas.paint(view, mask & outside & not_bone & (v > 0), Tissue.HERNIA, disc.label, idx)
