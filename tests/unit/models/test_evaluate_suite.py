"""``pacs-node evaluate --suite``: every shift of a suite, one table, the release targets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.robustness import SUITES
from models.training.evaluate import Evaluation, study_record
from models.training.report import format_targets
from models.training.suite import Miss, Targets, suite_plan, target_misses
from worker.commands import evaluate as evaluate_command

TINY_CHECKPOINT = Path(__file__).with_name("data") / "tiny_golden.safetensors"


def test_ci_suite_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "suite.json", tmp_path / "reliability.png"
    argv = ["--suite", "ci", "--checkpoint", f"tiny={TINY_CHECKPOINT}", "--json", str(out)]
    argv += ["--reliability", str(png), "--threads", "1", "--quiet"]
    assert evaluate_command.main(argv) == 0
    printed = capsys.readouterr().out
    table, targets = printed.split("\ntargets:", 1)
    shifts, (start, stop) = SUITES["ci"]
    for shift in shifts:
        assert shift in table
        assert f"\n  {shift}: mIoU " in targets  # an untrained model misses every target
    assert "worst structure" in table and "flag|failed" in table
    document = json.loads(out.read_text())
    assert document["seeds"] == [start, stop] and list(document["shifts"]) == list(shifts)
    for shift in shifts:
        result = document["shifts"][shift]["results"]["tiny"]
        assert result["studies"] == stop - start and 0 <= result["miou"] <= 1
        assert {"all", "disc_bulge"} <= set(result["abnormalities"]) <= set(result["reliability"])
        assert set(result["quality"]) >= {"flag_rate", "sensitivity", "false_alarm_rate"}
        assert [r["study_id"] for r in result["per_study"]] == [
            f"phantom-{seed}" for seed in range(start, stop)
        ]
        assert result["retrieval"] == {}  # no text encoder unless --text
        misses = document["shifts"][shift]["target_misses"]["tiny"]
        assert any(m["metric"] == "mIoU" and m["margin"] < 0 for m in misses)
    assert png.stat().st_size > 0


def test_seeds_override_the_suite_range_and_unknown_suites_are_refused() -> None:
    assert suite_plan("ci", range(5, 6)) == (SUITES["ci"][0], range(5, 6))
    with pytest.raises(ValueError, match="unknown suite"):
        suite_plan("nightly")
    with pytest.raises(SystemExit):
        evaluate_command.main(["--suite", "nightly"])


def evaluation(
    structures: dict[str, float], abnormalities: dict[str, dict[str, float]]
) -> Evaluation:
    ious = {k: {"dice": v, "iou": v, "hd95": 1.0} for k, v in structures.items()}
    return Evaluation(ious, miou=0.91, mean_dice=0.95, abnormalities=abnormalities)


def test_target_misses_and_their_margins() -> None:
    result = evaluation(
        {"L5": 0.88, "L1": 0.95, "T9": 0.5},  # T9 is not lumbar: no target
        {
            "disc_bulge": {"recall": 0.85, "fpr": 0.02},
            "schmorl_node": {"recall": math.nan, "fpr": 0.08},  # no positives: recall unmeasured
            "all": {"recall": 0.1, "fpr": 0.9},  # pooled: no target
        },
    )
    misses = target_misses(result)
    assert [(m.metric, round(m.margin, 3)) for m in misses] == [
        ("L5 IoU", -0.04),
        ("disc_bulge recall", -0.05),
        ("schmorl_node FPR", 0.03),
    ]
    assert target_misses(result, Targets(lumbar_iou=0.8, recall=0.8, fpr=0.1)) == []
    text = format_targets({"fov_small": {"a": misses}, "baseline": {"a": []}}, Targets())
    assert "a:\n  fov_small: L5 IoU 0.880 (-0.040)" in text
    assert "schmorl_node FPR 0.080 (+0.030)" in text and "baseline: all met" in text
    assert Miss("mIoU", 0.8, 0.9).margin == pytest.approx(-0.1)


def test_a_study_fails_on_low_miou_or_a_misnamed_lumbar_level() -> None:
    prediction = SimpleNamespace(quality=SimpleNamespace(needs_review=True, reasons=("fov",)))
    good = dict.fromkeys(("L1", "L2", "L3", "L4", "L5", "S", "L4/L5"), (0.99, 0.98, 1.0))
    record = study_record("a", good, prediction)  # type: ignore[arg-type]
    assert record["miou"] == pytest.approx(0.98) and not record["failed"]
    assert record["needs_review"] and record["reasons"] == ["fov"]
    # mIoU 0.904, but L3 overlaps another level: misnamed
    misnamed = {**good, "L3": (0.6, 0.45, 9.0)}
    assert study_record("b", misnamed, prediction)["failed"]  # type: ignore[arg-type]
    # a disc below 0.5 is no misnamed level; mIoU 0.904 passes, 0.84 fails
    disc = {**good, "L4/L5": (0.6, 0.45, 3.0)}
    assert not study_record("c", disc, prediction)["failed"]  # type: ignore[arg-type]
    lost = {**good, "L4/L5": (0.0, 0.0, math.nan)}
    assert study_record("d", lost, prediction)["failed"]  # type: ignore[arg-type]
