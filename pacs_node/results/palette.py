"""Display colours of structures, shared by the SEG (Recommended Display CIELab) and key images."""

from __future__ import annotations

_COLOURS = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip


def structure_colour(value: int) -> tuple[int, int, int]:
    """sRGB colour of the structure with label ``value`` (distinct for values 1..20)."""
    return _COLOURS[(value - 1) % len(_COLOURS)]
