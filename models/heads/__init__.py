"""The network's heads: projections into the shared space, segmentation heads (a registry, one
entry per ``ModelConfig.seg_head``) and the per-level abnormality head."""

from models.heads.abnormality import ABNORMALITY_QUERIES, AbnormalityHead, AbnormalityScores
from models.heads.projection import ProjectionHead
from models.heads.segmentation import (
    HeadDims,
    SegmentationHead,
    SegmentationInputs,
    TextGuidedHead,
    UniversalHead,
    VisualHead,
    create_seg_head,
    register_seg_head,
    seg_head_names,
)

__all__ = [
    "ABNORMALITY_QUERIES",
    "AbnormalityHead",
    "AbnormalityScores",
    "HeadDims",
    "ProjectionHead",
    "SegmentationHead",
    "SegmentationInputs",
    "TextGuidedHead",
    "UniversalHead",
    "VisualHead",
    "create_seg_head",
    "register_seg_head",
    "seg_head_names",
]
