"""Post-processing: connected components, level labelling by counting discs, disc height."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from models.labels import load_label_scheme
from models.metrics import dice_iou
from models.phantom import PhantomConfig, generate_study
from models.postprocess import (
    _component_pixels,
    disc_height_mm,
    largest_components,
    relabel_levels,
    superior_coordinate,
    superior_direction,
)

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows run head -> feet


def test_largest_component_drops_islands() -> None:
    labels = np.zeros((1, 10, 10), dtype=np.uint8)
    labels[0, 1:5, 1:5] = 3
    labels[0, 8, 8] = 3
    out = largest_components(labels, [3])
    assert out[0, 8, 8] == 0 and (out == 3).sum() == 16


def test_superior_coordinate_follows_orientation() -> None:
    superior = superior_coordinate((3, 2), SAGITTAL, (2.0, 1.0))
    assert superior[0, 0] == 0 and superior[2, 0] == -4.0
    flipped = superior_coordinate((3, 2), (0.0, 1.0, 0.0, 0.0, 0.0, 1.0), (2.0, 1.0))
    assert flipped[2, 0] == 4.0
    with pytest.raises(ValueError):
        superior_coordinate((3, 2), (1.0, 0.0), (1.0, 1.0))


SCHEME = load_label_scheme()
VERTEBRAE = [v.value for v in SCHEME.vertebrae]  # T9 .. S
DISCS = [d.value for d in SCHEME.discs]  # T9/T10 .. L5/S1


def ladder(vertebrae: int, top_rows: int = 8) -> np.ndarray:
    """Sagittal stack, rows head -> feet: a partial vertebra of ``top_rows`` rows at the top, then
    disc, vertebra, ... down to the sacrum; ``vertebrae`` vertebrae above the sacrum in all."""
    rows = [(VERTEBRAE[-1 - vertebrae], top_rows)]
    for level in range(vertebrae - 1, -1, -1):
        rows += [(DISCS[-1 - level], 2), (VERTEBRAE[-1 - level], 8)]
    labels = np.zeros((3, sum(r for _, r in rows) + 4, 40), dtype=np.uint8)
    top = 2
    for value, height in rows:
        labels[:, top : top + height, 10:30] = value
        top += height
    return labels


def relabel(labels: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    return relabel_levels(labels, VERTEBRAE, DISCS, SAGITTAL, spacing)


def test_superior_direction_of_sagittal_slices() -> None:
    assert np.allclose(superior_direction(SAGITTAL), [-1.0, 0.0])
    with pytest.raises(ValueError):
        superior_direction((1.0, 0.0, 0.0, 0.0, 1.0, 0.0))  # axial: no head-feet axis


def test_relabel_names_a_level_the_network_merged() -> None:
    truth = ladder(8)  # T10 (partial) .. L5 above the sacrum
    network = truth.copy()
    network[network == 9] = 8  # T10 called T11, never named
    network[network == 18] = 17  # T10/T11 called T11/T12
    assert np.array_equal(relabel(network), truth)


def test_relabel_keeps_the_network_name_of_a_vertebra_above_the_highest_disc_found() -> None:
    """The disc between the top two vertebrae is missed: the network's name of the upper one
    stands, rather than the count merging it into the vertebra below."""
    truth = ladder(8, top_rows=4)  # T10 (partial, smaller than T11) .. L5 above the sacrum
    network = truth.copy()
    network[truth == 18] = 0  # the T10/T11 disc not found
    out = relabel(network)
    assert np.array_equal(out, network)
    assert (out == 9).sum() == (truth == 9).sum()  # T10 kept, not called T11
    shifted = network.copy()
    shifted[truth == 9] = 10  # a name two levels up is not one the count can accept
    assert (relabel(shifted)[truth == 9] == 8).all()


def test_relabel_counts_a_corner_of_the_top_vertebra_named_one_level_higher() -> None:
    """The top vertebra is cut by the edge of the field of view; the network names a corner of
    it one level higher. That corner lies beside the vertebra, not above it: the count wins."""
    truth = ladder(7)  # T11 (partial) .. L5 above the sacrum
    t11 = 8
    rows = np.nonzero((truth[1] == t11).any(1))[0]
    network = truth.copy()
    network[:, rows[0] : rows[0] + 5, 10:14] = t11 + 1  # a corner called T10
    assert np.array_equal(relabel(network), truth)


def test_relabel_keeps_the_network_name_of_a_process_sloping_below_the_disc_plane() -> None:
    """Behind the discs, a disc plane extended backwards is no border between levels: a
    spinous process the network names as its own vertebra keeps that name."""
    truth = ladder(5)
    l2 = 5
    rows = np.nonzero((truth[1] == l2).any(1))[0]
    truth[:, rows[4] : rows[-1] + 7, 32:36] = l2  # reaches 6 rows under L2's body, past L2/L3
    assert np.array_equal(relabel(truth), truth)
    beside_body = (slice(None), slice(rows[4], rows[-1] + 1), slice(32, 36))
    lower = truth.copy()
    lower[beside_body] = l2 - 1  # called L3 beside L2's body: one level under the count
    assert (relabel(lower)[beside_body] == l2).all()  # the count stands


def test_relabel_counts_from_the_sacrum_when_the_network_shifts_every_level() -> None:
    truth = ladder(6)  # T11 (partial) .. L5 above the sacrum
    network = truth.copy()
    lumbar = (truth >= 2) & (truth <= 8) | (truth >= 11) & (truth <= 17)
    network[lumbar] = truth[lumbar] + 1  # every level called one higher: L5 -> L4, ...
    top_of_sacrum = np.zeros(truth.shape, dtype=bool)
    top_of_sacrum[:, np.nonzero((truth[1] == 1).any(1))[0][:3]] = True
    network[top_of_sacrum & (truth == 1)] = 2  # the top of the sacrum called "L5"
    assert (network == 2).sum() > 0
    assert np.array_equal(relabel(network), truth)


def test_relabel_counts_from_a_sacrum_the_network_half_calls_l5() -> None:
    """Under half of the sacrum named S (45%) still anchors the count there."""
    truth = ladder(6)
    network = truth.copy()
    lumbar = (truth >= 2) & (truth <= 8) | (truth >= 11) & (truth <= 17)
    network[lumbar] = truth[lumbar] + 1
    sacrum = np.argwhere(truth == 1)
    called_l5 = sacrum[: int(0.55 * len(sacrum))]  # the upper 55% of the sacrum called "L5"
    network[tuple(called_l5.T)] = 2
    assert np.array_equal(relabel(network), truth)


def test_relabel_keeps_a_disc_cut_by_the_top_of_the_field_of_view() -> None:
    truth = ladder(6)  # rows 0-1 are background above the partial top vertebra
    top_disc = DISCS[-1 - 6]  # the disc above the top vertebra
    truth[:2, 0, 10:16] = top_disc  # 12 voxels in the first row: a tenth of a whole disc
    assert np.array_equal(relabel(truth), truth)


def test_relabel_fixes_swapped_levels() -> None:
    truth = ladder(6)
    network = truth.copy()
    for a, b in ((4, 5), (13, 14)):  # L3 <-> L2 and L3/L4 <-> L2/L3
        network[truth == a], network[truth == b] = b, a
    assert np.array_equal(relabel(network), truth)


def test_relabel_ignores_specks_of_disc_inside_vertebrae() -> None:
    """More specks than discs (a noisy network) must not add levels."""
    truth = ladder(5)
    network = truth.copy()
    for value in (2, 3, 4, 5):  # L5 .. L2
        rows = np.nonzero((truth[1] == value).any(1))[0]
        for col in (12, 18, 24):
            network[1, rows[3] : rows[3] + 3, col : col + 3] = 13  # 9-voxel "disc" specks
    out = relabel(network, spacing=(2.0, 1.0))  # specks 8 mm from the discs: not one of them
    for value in (2, 3, 4, 5):
        assert (out[truth == value] == value).mean() > 0.9
    outside = ~np.isin(truth, [2, 3, 4, 5])
    assert np.array_equal(out[outside], truth[outside])


def test_relabel_without_discs_changes_nothing() -> None:
    labels = ladder(4)
    labels[np.isin(labels, DISCS)] = 0
    assert np.array_equal(relabel(labels), labels)


def test_relabel_keeps_phantom_ground_truth() -> None:
    """Real anatomy (posterior elements, lordosis, tilted discs) in its DICOM orientation."""
    study = generate_study(5001, PhantomConfig.small())
    series = study.get("SAG_T2")
    assert series.labels is not None
    truth = series.labels
    out = relabel_levels(truth, VERTEBRAE, DISCS, series.image_orientation, series.pixel_spacing)
    for name in ("S", "L5", "L4", "L3", "L2", "L1", "L5/S1", "L4/L5", "L3/L4", "L2/L3", "L1/L2"):
        value = SCHEME.by_name(name).value
        assert dice_iou(out == value, truth == value)[1] > 0.95, name


def test_disc_height_of_a_bar() -> None:
    mask = np.zeros((3, 40, 60), dtype=bool)
    mask[1, 20:24, 10:50] = True  # 4 rows x 40 cols at 0.5 mm -> 2 mm high, 20 mm long
    assert disc_height_mm(mask, (0.5, 0.5)) == pytest.approx(2.0, rel=0.05)
    assert math.isnan(disc_height_mm(np.zeros((1, 5, 5), dtype=bool), (1.0, 1.0)))


def test_component_pixels_lists_each_component_in_raster_order() -> None:
    rng = np.random.default_rng(5)
    mask = rng.random((3, 20, 20)) > 0.7
    labelled, count = ndimage.label(mask)
    got = _component_pixels(mask)
    assert len(got) == count > 1
    for index, (rows, cols) in enumerate(got, start=1):
        _, want_rows, want_cols = np.nonzero(labelled == index)
        assert np.array_equal(rows, want_rows) and np.array_equal(cols, want_cols)
    assert _component_pixels(np.zeros((2, 4, 4), bool)) == []
