"""Which result goes where: destinations have names and kinds; SEG to viewers that show it, key
images to those that do not, the ORU to the RIS; deliveries refer to destinations by name."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import load_settings
from pacs_node.db.deliveries import create_deliveries
from pacs_node.db.tables import Delivery, Job, Result, Study
from pacs_node.destinations import Destination, DestinationKind, Destinations
from pacs_node.errors import ConfigError


def test_destination_syntax_names_and_kinds() -> None:
    settings = load_settings(
        environ={
            "PACS_NODE_DESTINATIONS": "PACS@pacs:104,viewer=OLDVIEW@10.1.2.3:11112/key-images",
            "PACS_NODE_HL7_ENDPOINT": "ris:2575",
        }
    )
    registry = settings.registry
    assert [(d.name, d.kind, d.ae_title, d.host, d.port) for d in registry] == [
        ("PACS", DestinationKind.DICOM, "PACS", "pacs", 104),
        ("viewer", DestinationKind.DICOM_KEY_IMAGES, "OLDVIEW", "10.1.2.3", 11112),
        ("hl7", DestinationKind.HL7, "", "ris", 2575),
    ]
    assert registry.named("viewer") == settings.destinations[1]
    assert registry.named("nope") is None
    assert str(registry.named("viewer")) == "viewer (OLDVIEW@10.1.2.3:11112)"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("PACS@pacs", "is not"),
        ("pacs:104", "is not"),
        ("bad name=PACS@pacs:104", "destination name"),
        ("PACS@pacs:104,PACS@other:104", "must be unique"),
        ("PACS@pacs:0", "out of range"),
    ],
)
def test_bad_destinations_are_refused_naming_the_variable(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"^PACS_NODE_DESTINATIONS: .*{problem}"):
        load_settings(environ={"PACS_NODE_DESTINATIONS": value})


def test_each_destination_gets_what_its_viewer_shows(sessions: sessionmaker[Session]) -> None:
    registry = Destinations(
        (
            Destination.dicom("PACS", "pacs", 104),
            Destination.dicom("OLDVIEW", "viewer", 104, key_images=True),
            Destination.hl7("ris", 2575),
        )
    )
    with sessions.begin() as session:
        study = Study(study_instance_uid="1.2.3", status="complete")
        job = Job(study=study, version=1, state="results_ready")
        session.add(job)
        session.flush()
        results = [
            Result(
                job_id=job.id,
                kind=kind,
                path=f"{kind}.dcm",
                sha256="0" * 64,
                size_bytes=1,
                sop_instance_uid=None if kind == "oru" else f"1.2.3.{i}",
            )
            for i, kind in enumerate(("seg", "key_image", "key_image", "sr", "oru"))
        ]
        session.add_all(results)
        session.flush()
        create_deliveries(session, job.id, results, registry)
    with sessions() as session:
        rows = session.execute(
            select(Result.kind, Delivery.destination, Delivery.channel).join(
                Result, Result.id == Delivery.result_id
            )
        ).all()
    assert sorted(rows) == sorted(
        [
            ("seg", "PACS", "dicom"),
            ("key_image", "OLDVIEW", "dicom"),
            ("key_image", "OLDVIEW", "dicom"),
            ("sr", "PACS", "dicom"),
            ("sr", "OLDVIEW", "dicom"),
            ("oru", "hl7", "hl7"),
        ]
    )
