"""Configuration of the phantom generator: study size, prevalence of findings, image quality."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from models.labels import load_label_scheme

#: Per-level prevalence at a typical lower-lumbar level (L4/L5) for a middle-aged patient with back
#: pain. Levels higher up get less (see ``pathology.LEVEL_WEIGHTS``); the patient's latent
#: degeneration raises or lowers all of them together (realistic co-occurrence).
DEFAULT_PREVALENCE: Mapping[str, float] = MappingProxyType(
    {
        "disc_bulge": 0.30,
        "disc_protrusion": 0.15,
        "disc_extrusion": 0.05,
        "schmorl_node": 0.08,
        "vertebral_degeneration": 0.15,
    }
)


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that shapes a synthetic study; ``standard()`` and ``small()`` are the presets.

    Ranges are ``(low, high)`` and sampled uniformly per study; choices are sampled uniformly.

    Attributes:
        sag_matrix: Sagittal matrix sizes (square, pixels) to choose from.
        sag_fov_mm: Sagittal field of view (mm).
        sag_bottom_mm: How far the bottom of the sagittal field of view lies below the S1
            endplate (mm); negative values end the coverage above the sacrum (mid-spine).
        sag_slices: Sagittal slice counts (inclusive range).
        sag_thickness_mm: Sagittal slice thickness (mm); spacing adds ``slice_gap``.
        slice_gap: Gap between slices as a fraction of the thickness.
        ax_matrix: Axial matrix sizes (pixels).
        ax_fov_mm: Axial field of view (mm).
        ax_thickness_mm: Axial slice thickness (mm).
        ax_max_slices: Cap on axial slices (the stack spans L3/L4 to L5/S1).
        include_axial: Whether to make the AX_T2 series.
        include_stir: Whether to make the SAG_STIR series.
        localizer_probability: Chance that a study has a LOCALIZER series.
        subsamples: Planes averaged across a slice's thickness (partial volume); odd.
        prevalence: Per-level prevalence per abnormality key (keys from ``models.labels``).
        transitional_probability: Chance of transitional lumbosacral anatomy.
        noise_fraction: Rician noise sigma as a fraction of the bright-tissue signal.
        bias_strength: Depth of the coil sensitivity fall-off (0 = flat).
        motion_probability: Chance that a series has motion ghosting.
        field_strengths: Field strengths (T) to choose from.
        contrast_gamma: Exponent of a vendor-like contrast curve applied to the signal before
            noise (1 = linear; drawn only when the range is not a single value, so the default
            leaves every study as it was).
    """

    sag_matrix: tuple[int, ...] = (384, 448, 512)
    sag_fov_mm: tuple[float, float] = (280.0, 320.0)
    sag_bottom_mm: tuple[float, float] = (55.0, 95.0)
    sag_slices: tuple[int, int] = (15, 19)
    sag_thickness_mm: tuple[float, float] = (3.5, 4.0)
    slice_gap: float = 0.1
    ax_matrix: tuple[int, ...] = (320, 384)
    ax_fov_mm: tuple[float, float] = (180.0, 220.0)
    ax_thickness_mm: float = 4.0
    ax_max_slices: int = 24
    include_axial: bool = True
    include_stir: bool = True
    localizer_probability: float = 0.3
    subsamples: int = 3
    prevalence: Mapping[str, float] = field(default_factory=lambda: DEFAULT_PREVALENCE)
    transitional_probability: float = 0.06
    noise_fraction: tuple[float, float] = (0.01, 0.03)
    bias_strength: tuple[float, float] = (0.3, 0.6)
    motion_probability: float = 0.15
    field_strengths: tuple[float, ...] = (1.5, 3.0)
    contrast_gamma: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        """Check ranges and prevalence keys.

        Raises:
            ValueError: if a range is inverted, a count is too small, or a prevalence key is
                not an abnormality of the label scheme or its value is outside [0, 1].
        """
        for name in ("sag_fov_mm", "sag_slices", "sag_thickness_mm", "ax_fov_mm"):
            low, high = getattr(self, name)
            if low > high or low <= 0:
                raise ValueError(f"{name} must be a positive (low, high) range, got {low, high}")
        for name in ("sag_bottom_mm", "contrast_gamma", "noise_fraction", "bias_strength"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be a (low, high) range, got {low, high}")
        if self.contrast_gamma[0] <= 0:
            raise ValueError("contrast_gamma must be positive")
        if self.subsamples < 1 or self.subsamples % 2 == 0:
            raise ValueError("subsamples must be a positive odd number (the centre gives labels)")
        if self.ax_max_slices < 4:
            raise ValueError("ax_max_slices must be at least 4")
        known = {a.key for a in load_label_scheme().abnormalities}
        unknown = set(self.prevalence) - known
        if unknown:
            raise ValueError(f"unknown abnormality keys in prevalence: {sorted(unknown)}")
        if any(not 0.0 <= p <= 1.0 for p in self.prevalence.values()):
            raise ValueError("prevalence values must lie in [0, 1]")

    def __hash__(self) -> int:
        """Hash of every field, the prevalence mapping as sorted items (usable as a cache key)."""
        values = [getattr(self, f.name) for f in fields(self)]
        values[[f.name for f in fields(self)].index("prevalence")] = tuple(
            sorted(self.prevalence.items())
        )
        return hash(tuple(values))

    @classmethod
    def standard(cls) -> PhantomConfig:
        """Real-size studies: 384-512 px sagittal, 15-19 slices, axial T2 through L3-S1."""
        return cls()

    @classmethod
    def small(cls) -> PhantomConfig:
        """Fast studies for tests and model training: 128 px sagittal, 9-12 slices, 96 px axial."""
        return cls(
            sag_matrix=(128,),
            sag_slices=(9, 12),
            sag_thickness_mm=(4.0, 4.5),
            ax_matrix=(96,),
            ax_max_slices=10,
            localizer_probability=0.0,
        )

    def with_prevalence(self, **prevalence: float) -> PhantomConfig:
        """Return a copy with some prevalences replaced (e.g. ``disc_extrusion=0.5``).

        Raises:
            ValueError: if a key is not an abnormality key or a value is outside [0, 1].
        """
        merged = {**self.prevalence, **prevalence}
        return replace(self, prevalence=MappingProxyType(merged))
