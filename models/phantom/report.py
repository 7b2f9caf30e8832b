"""A templated radiology report per study: technique, findings per level, impression.

Phrasings vary (level written "L4/L5", "L4-L5" or "L4-5"; several sentences per finding and per
normal level; negations), so a text encoder cannot key on one template. The text is the text side
of contrastive image-report training, so it states exactly the ground truth and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.phantom.pathology import LevelPathology

_ROLE_TEXT = {
    "SAG_T1": "sagittal T1",
    "SAG_T2": "sagittal T2",
    "SAG_STIR": "sagittal STIR",
    "AX_T2": "axial T2",
}
_NORMAL_LEVEL = (
    "No disc bulge or herniation.",
    "Unremarkable.",
    "Normal disc height and signal. No herniation.",
    "No significant abnormality.",
    "No disc herniation, canal or foraminal stenosis.",
)
_BULGE = (
    "Broad-based disc bulge.",
    "Diffuse disc bulge without focal herniation.",
    "Mild circumferential disc bulge.",
)
_PROTRUSION = (
    "{side} disc protrusion indenting the ventral thecal sac.",
    "Focal {side_l} disc protrusion.",
    "{side} protrusion of the disc.",
)
_EXTRUSION = (
    "{side} disc extrusion with {dir} migration.",
    "Large {side_l} extruded disc fragment migrating {dir}ly.",
    "{side} disc extrusion, extending {dir}ly behind the vertebral body.",
)
_SCHMORL = (
    "Schmorl's node at the {plate} endplate of {vert}.",
    "Small intravertebral disc herniation (Schmorl's node) in the {plate} endplate of {vert}.",
)
_DEGENERATION = (
    "Disc height loss and desiccation with Modic type {modic} endplate changes.",
    "Degenerative disc with loss of height, low T2 signal and Modic type {modic} marrow change.",
    "Modic type {modic} degenerative endplate and marrow change, with a narrowed, dark disc.",
)
_NORMAL_IMPRESSION = (
    "No significant abnormality of the lumbar spine.",
    "Normal MRI of the lumbar spine.",
    "No disc herniation or degenerative change.",
)


def _level_text(level: str, style: int) -> str:
    upper, lower = level.split("/")
    if style == 0:
        return level
    if style == 1:
        return f"{upper}-{lower}"
    shared = upper[0] == lower[0]
    return f"{upper}-{lower[1:]}" if shared else f"{upper}-{lower}"


def _side(x: float) -> tuple[str, str]:
    if abs(x) < 1e-6:
        return "Central", "central"
    side = "left" if x > 0 else "right"  # +x is the patient's left (LPS)
    return f"{side.capitalize()} paracentral", f"{side} paracentral"


def _level_sentences(rng: np.random.Generator, path: LevelPathology) -> list[str]:
    upper, lower = path.level.split("/")
    out: list[str] = []
    side, side_l = _side(path.hernia_x)
    if path.herniation == "disc_bulge":
        out.append(str(rng.choice(_BULGE)))
    elif path.herniation == "disc_protrusion":
        out.append(str(rng.choice(_PROTRUSION)).format(side=side, side_l=side_l))
    elif path.herniation == "disc_extrusion":
        direction = "cranial" if path.hernia_migration > 0 else "caudal"
        out.append(str(rng.choice(_EXTRUSION)).format(side=side, side_l=side_l, dir=direction))
    if path.schmorl != "none":
        vert, plate = (upper, "inferior") if path.schmorl == "upper" else (lower, "superior")
        out.append(str(rng.choice(_SCHMORL)).format(plate=plate, vert=vert))
    if path.modic:
        out.append(str(rng.choice(_DEGENERATION)).format(modic=path.modic))
    return out


def _impression_item(path: LevelPathology, level: str) -> list[str]:
    items = []
    names = {
        "disc_bulge": "disc bulge",
        "disc_protrusion": "disc protrusion",
        "disc_extrusion": "disc extrusion",
    }
    if path.herniation != "none":
        items.append(f"{level} {names[path.herniation]}.")
    if path.schmorl != "none":
        items.append(f"Schmorl's node at {level}.")
    if path.modic:
        items.append(f"Degenerative disc disease at {level} with Modic type {path.modic} change.")
    return items


def write_report(
    rng: np.random.Generator,
    levels: Sequence[LevelPathology],
    *,
    transitional: str,
    conus_level: str,
    lordosis_deg: float,
    roles: Sequence[str],
) -> str:
    """Write the report of one study.

    Args:
        rng: Random source for the phrasing.
        levels: Pathology of each disc level in the field of view, cranio-caudal.
        transitional: "none", "sacralization" or "lumbarization".
        conus_level: Structure name where the conus ends, e.g. "L1" or "L1/L2".
        lordosis_deg: Lumbar lordosis (degrees).
        roles: Series roles in the study.

    Returns:
        The report text: EXAMINATION, TECHNIQUE, FINDINGS (per level) and IMPRESSION.
    """
    style = int(rng.integers(0, 3))
    seqs = [_ROLE_TEXT[r] for r in roles if r in _ROLE_TEXT]
    technique = ", ".join(seqs[:-1]) + (" and " if len(seqs) > 1 else "") + seqs[-1]
    lines = [
        "EXAMINATION: MRI lumbar spine without contrast.",
        f"TECHNIQUE: {technique[0].upper()}{technique[1:]} images.",
        "",
        "FINDINGS:",
    ]
    if lordosis_deg < 30:
        lines.append("Straightening of the lumbar lordosis.")
    else:
        lines.append(str(rng.choice(("Normal lumbar lordosis.", "Alignment is maintained."))))
    if transitional == "sacralization":
        lines.append("Transitional lumbosacral vertebra: partial sacralization of L5.")
    elif transitional == "lumbarization":
        lines.append("Transitional lumbosacral vertebra: lumbarization of S1.")
    if any(p.modic for p in levels):
        lines.append("Vertebral body heights are maintained.")
    else:
        lines.append(
            str(
                rng.choice(
                    (
                        "Vertebral body heights and marrow signal are normal.",
                        "No marrow signal abnormality. Vertebral body heights are maintained.",
                    )
                )
            )
        )
    conus = conus_level.replace("/", "-") if style else conus_level
    lines.append(f"The conus medullaris terminates at the level of {conus} and is normal.")
    impression: list[str] = []
    thoracic_normal = True
    for path in levels:
        text = _level_text(path.level, style)
        sentences = _level_sentences(rng, path)
        impression.extend(_impression_item(path, text))
        if path.level.startswith("T") and not path.level.startswith("T12") and not sentences:
            continue
        if path.level.startswith("T") and not path.level.startswith("T12"):
            thoracic_normal = False
        body = " ".join(sentences) if sentences else str(rng.choice(_NORMAL_LEVEL))
        lines.append(f"{text}: {body}")
    if thoracic_normal and any(p.level.startswith("T") for p in levels):
        lines.append("The visualized lower thoracic discs are unremarkable.")
    lines += ["", "IMPRESSION:"]
    if impression:
        lines += [f"{i + 1}. {item}" for i, item in enumerate(impression)]
    else:
        lines.append(str(rng.choice(_NORMAL_IMPRESSION)))
    return "\n".join(lines) + "\n"
