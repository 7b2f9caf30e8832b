"""Disc-aligned crops of each level, encoded slice by slice by a small CNN.

A herniation is one to three pixels beyond the disc margin, and a Schmorl's node a few pixels
inside the endplate; features averaged over a whole level region wash them out. So each disc
level gets its own crop at full model resolution: centred on the disc, rotated so the disc's long
axis runs along the crop's columns (anterior to posterior as the image's columns run), tall enough
to hold the endplates of both neighbouring vertebrae. The central slices through the disc are
cropped; the CNN turns each into a vector (mean and max of its last map), which the network then
pools over slices (:class:`~models.slice_pooling.SlicePooling`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import nn

#: Random rotation (radians) and shift (model pixels) of each crop's frame in training.
JITTER_ANGLE = 0.09
JITTER_SHIFT_PX = 2.0
#: Fewest disc pixels (all slices together) for a level to be cropped.
MIN_DISC_PIXELS = 3


@dataclass
class LevelCropFeatures:
    """Per-slice crop features of every disc level.

    Attributes:
        features: (L, K, F) features, zeros where ``valid`` is False.
        valid: (L, K) bool, crop slots that hold a slice through the level's disc.
        slice_index: (L, K) index of the slice each slot was cropped from (0 when not valid).
    """

    features: torch.Tensor
    valid: torch.Tensor
    slice_index: torch.Tensor


def disc_frame(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (row, col) and long-axis angle of a 2-D disc mask.

    The angle is that of the principal axis measured from the column direction towards the row
    direction, in (-pi/2, pi/2], so the axis always points towards increasing columns.

    Raises:
        ValueError: if the mask is empty.
    """
    points = mask.nonzero().to(torch.float32)
    if points.shape[0] == 0:
        raise ValueError("empty disc mask")
    centre = points.mean(0)
    d = points - centre
    rr, cc, rc = (d[:, 0] ** 2).mean(), (d[:, 1] ** 2).mean(), (d[:, 0] * d[:, 1]).mean()
    angle = 0.5 * torch.atan2(2 * rc, cc - rr)
    return centre, angle


def central_window(present: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of at most ``count`` consecutive slices centred on the slices where a disc is.

    Args:
        present: (S,) bool, slices where the disc appears (at least one True).
        count: window length.
    """
    where = present.nonzero().flatten()
    middle = int(where[len(where) // 2])
    total = present.shape[0]
    start = max(0, min(middle - count // 2, total - count))
    return torch.arange(start, min(start + count, total), device=present.device)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.GELU(),
    )


class LevelCropEncoder(nn.Module):
    """Crop every disc level of a stack and encode each crop slice (see the module docstring)."""

    def __init__(self, in_chans: int, width: int, rows: int, cols: int, max_slices: int) -> None:
        """Build the CNN: three double-conv blocks (``width``, 2x, 4x channels), two max-pools.

        Raises:
            ValueError: if a size is not positive.
        """
        super().__init__()
        if min(width, rows, cols, max_slices) <= 0:
            raise ValueError("crop sizes and width must be positive")
        self.rows, self.cols, self.max_slices = rows, cols, max_slices
        self.cnn = nn.Sequential(
            _block(in_chans, width),
            nn.MaxPool2d(2),
            _block(width, 2 * width),
            nn.MaxPool2d(2),
            _block(2 * width, 4 * width),
        )
        self.out_features = 8 * width

    def sample(
        self, images: torch.Tensor, labels: torch.Tensor, discs: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The crops of (S, C, H, W) ``images`` for the disc label values ``discs``.

        In training mode each crop frame is jittered (rotation and shift) with torch's global
        random source.

        Returns:
            (crops (N, C, rows, cols) in (level, slot) order, valid (L, K), slice_index (L, K)),
            N being the number of valid slots.
        """
        count, slots = len(discs), self.max_slices
        device = images.device
        valid = torch.zeros(count, slots, dtype=torch.bool, device=device)
        slice_index = torch.zeros(count, slots, dtype=torch.long, device=device)
        thetas, picked = [], []
        half = (images.shape[-2] / 2, images.shape[-1] / 2)
        for level, value in enumerate(discs):
            mask = labels == value
            if int(mask.sum()) < MIN_DISC_PIXELS:
                continue
            centre, angle = disc_frame(mask.any(0))
            if self.training:
                angle = angle + (torch.rand((), device=device) * 2 - 1) * JITTER_ANGLE
                centre = centre + (torch.rand(2, device=device) * 2 - 1) * JITTER_SHIFT_PX
            window = central_window(mask.any((1, 2)), slots)
            valid[level, : len(window)] = True
            slice_index[level, : len(window)] = window
            theta = _crop_transform(centre, angle, (self.rows, self.cols), half)
            thetas.append(theta.expand(len(window), -1, -1))
            picked.append(window)
        if not thetas:
            empty = images.new_zeros(0, images.shape[1], self.rows, self.cols)
            return empty, valid, slice_index
        source = images[torch.cat(picked)]
        grid = nnf.affine_grid(
            torch.cat(thetas).to(source.dtype),
            [source.shape[0], source.shape[1], self.rows, self.cols],
            align_corners=False,
        )
        return nnf.grid_sample(source, grid, align_corners=False), valid, slice_index

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, discs: tuple[int, ...]
    ) -> LevelCropFeatures:
        """Crop (:meth:`sample`) and encode the levels of ``images`` with ``labels``."""
        crops, valid, slice_index = self.sample(images, labels, discs)
        features = images.new_zeros(*valid.shape, self.out_features)
        if crops.shape[0]:
            maps = self.cnn(crops)
            encoded = torch.cat([maps.mean((2, 3)), maps.amax((2, 3))], dim=1)
            features = features.to(encoded.dtype).index_put(valid.nonzero(as_tuple=True), encoded)
        return LevelCropFeatures(features, valid, slice_index)


def _crop_transform(
    centre: torch.Tensor,
    angle: torch.Tensor,
    crop: tuple[int, int],
    half_image: tuple[float, float],
) -> torch.Tensor:
    """The (2, 3) ``affine_grid`` matrix from crop coordinates to image coordinates.

    A crop offset of (dx, dy) pixels (columns, rows) lands at the image offset
    (cos dx - sin dy, sin dx + cos dy) from ``centre``; both sides use normalised coordinates.
    """
    (rows, cols), (half_r, half_c) = crop, half_image
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack(
        [
            torch.stack(
                [cos * cols / 2 / half_c, -sin * rows / 2 / half_c, (centre[1] + 0.5) / half_c - 1]
            ),
            torch.stack(
                [sin * cols / 2 / half_r, cos * rows / 2 / half_r, (centre[0] + 0.5) / half_r - 1]
            ),
        ]
    )
