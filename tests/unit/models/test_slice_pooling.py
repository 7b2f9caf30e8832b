"""RadCLIP slice pooling: masking, position encoding, permutation behaviour."""

from __future__ import annotations

import pytest
import torch

from models.slice_pooling import SlicePooling, position_encoding


def test_padding_slices_do_not_change_the_result() -> None:
    torch.manual_seed(0)
    pool = SlicePooling(16, heads=2).eval()
    slices = torch.randn(1, 3, 16)
    positions = torch.tensor([[0.0, 4.0, 8.0]])
    short = pool(slices, positions, torch.ones(1, 3, dtype=torch.bool))
    padded = pool(
        torch.cat([slices, torch.randn(1, 2, 16) * 100], 1),
        torch.tensor([[0.0, 4.0, 8.0, 99.0, -50.0]]),
        torch.tensor([[True, True, True, False, False]]),
    )
    assert torch.allclose(short, padded, atol=1e-5)


def test_positions_in_mm_matter_and_empty_rows_are_zero() -> None:
    torch.manual_seed(0)
    pool = SlicePooling(16, heads=2).eval()
    slices = torch.randn(2, 3, 16)
    valid = torch.tensor([[True, True, True], [False, False, False]])
    near = pool(slices, torch.tensor([[0.0, 3.0, 6.0]] * 2), valid)
    far = pool(slices, torch.tensor([[0.0, 30.0, 60.0]] * 2), valid)
    assert not torch.allclose(near[0], far[0])
    assert torch.equal(near[1], torch.zeros(16))


def test_position_encoding_shape_and_odd_dim() -> None:
    encoded = position_encoding(torch.tensor([[0.0, 1.5]]), 8)
    assert encoded.shape == (1, 2, 8)
    assert torch.allclose(encoded[0, 0, :4], torch.zeros(4))
    with pytest.raises(ValueError):
        position_encoding(torch.zeros(2), 7)
