"""``pacs-node phantom``: write synthetic lumbar spine MRI studies as DICOM with ground truth.

Usage: ``pacs-node phantom --out DIR --studies N --seed S [--size standard|small] [--preview]``.
Study ``i`` uses seed ``S + i`` and goes to ``DIR/study_<seed>/`` (layout and ground truth format:
``worker.phantom.truth``); ``--preview`` adds ``preview.png`` there (mid-sagittal T1, T2 and T2
with the label overlay).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path

from PIL import Image

from models.phantom import PhantomConfig, generate_study
from models.phantom.preview import preview_image
from worker.phantom import PatientInfo, WrittenStudy, write_study

PRESETS = {"standard": PhantomConfig.standard, "small": PhantomConfig.small}


def write_phantom(
    seed: int,
    out_dir: Path,
    *,
    size: str = "standard",
    preview: bool = False,
    uid_prefix: str | None = None,
) -> WrittenStudy:
    """Generate the study for ``seed`` and write it (and optionally its preview) to ``out_dir``.

    Raises:
        KeyError: if ``size`` is not a preset name.
        ValueError: if ``seed`` is negative or ``uid_prefix`` is invalid.
        OSError: if a file cannot be written.
    """
    study = generate_study(seed, PRESETS[size]())
    written = write_study(study, out_dir, uid_key=size, uid_prefix=uid_prefix)
    if preview:
        Image.fromarray(preview_image(study)).save(out_dir / "preview.png")
    return written


def write_prior_pair(
    seed: int, out_dir: Path, *, size: str = "small", days_between: int = 400
) -> tuple[WrittenStudy, WrittenStudy]:
    """Write a patient's prior and current study: the same seed's anatomy, the prior with no
    finding, the current ``days_between`` days later with findings added (every abnormality at
    four times its usual prevalence), under their own UIDs.

    Returns:
        (prior, current), in ``out_dir/prior`` and ``out_dir/current``.

    Raises:
        KeyError: if ``size`` is not a preset name.
        ValueError: if ``seed`` is negative.
        OSError: if a file cannot be written.
    """
    config = PRESETS[size]()
    none = config.with_prevalence(**dict.fromkeys(config.prevalence, 0.0))
    more = config.with_prevalence(**{k: min(1.0, 4 * p) for k, p in config.prevalence.items()})
    patient = PatientInfo.from_seed(seed)
    earlier = dataclasses.replace(
        patient, study_datetime=patient.study_datetime - dt.timedelta(days=days_between)
    )
    prior = write_study(
        generate_study(seed, none), out_dir / "prior", uid_key=f"{size}/prior", patient=earlier
    )
    current = write_study(
        generate_study(seed, more), out_dir / "current", uid_key=f"{size}/current", patient=patient
    )
    return prior, current


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pacs-node phantom",
        description="Write synthetic lumbar spine MRI studies (DICOM + ground truth).",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--studies", type=int, default=1, help="number of studies (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first study (default 0)")
    p.add_argument("--size", choices=sorted(PRESETS), default="standard", help="size preset")
    p.add_argument("--preview", action="store_true", help="also write preview.png per study")
    p.add_argument("--uid-prefix", default=None, help="UID root (default: pydicom's)")
    return p


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status.

    Raises:
        OSError: if the output cannot be written.
    """
    args = _parser().parse_args(argv)
    if args.studies < 1 or args.seed < 0:
        print("--studies must be at least 1 and --seed non-negative", file=sys.stderr)
        return 2
    for seed in range(args.seed, args.seed + args.studies):
        start = time.perf_counter()
        folder = args.out / f"study_{seed:06d}"
        written = write_phantom(
            seed, folder, size=args.size, preview=args.preview, uid_prefix=args.uid_prefix
        )
        files = sum(len(s.paths) for s in written.series)
        took = time.perf_counter() - start
        print(f"{folder}: {len(written.series)} series, {files} files, {took:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
