"""Synthetic lumbar spine MRI phantoms with ground truth (pure numpy/scipy, no DICOM).

``generate_study(seed, config)`` builds a seeded 3D model of T9 to the sacrum (vertebrae with
endplates and posterior elements, discs with nucleus and annulus, canal, CSF, cord and cauda
equina, epidural fat, muscles, subcutaneous fat, vessels), places the five abnormalities per disc
level, and images it with a spin-echo signal model as a lumbar protocol would: SAG_T1, SAG_T2,
SAG_STIR, AX_T2 and sometimes a LOCALIZER. Labels follow ``models/labels.py``. See ``FORMAT.md``
for the ground truth written beside the DICOM.
"""

from models.phantom.config import DEFAULT_PREVALENCE, PhantomConfig
from models.phantom.study import PhantomSeries, PhantomStudy, generate_study

__all__ = [
    "DEFAULT_PREVALENCE",
    "PhantomConfig",
    "PhantomSeries",
    "PhantomStudy",
    "generate_study",
]
