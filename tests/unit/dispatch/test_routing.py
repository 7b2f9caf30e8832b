"""Which result goes where: SEG to viewers that show it, key images to those that do not."""

from __future__ import annotations

from sqlalchemy import select

from pacs_node.config import Destination, load_settings
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.db.tables import Delivery, Job, Result, Study
from pacs_node.dispatch.ledger import create_deliveries


def test_destination_syntax() -> None:
    settings = load_settings(
        environ={"PACS_NODE_DESTINATIONS": "PACS@pacs:104,OLDVIEW@10.1.2.3:11112/key-images"}
    )
    assert settings.destinations == (
        Destination("PACS", "pacs", 104),
        Destination("OLDVIEW", "10.1.2.3", 11112, key_images=True),
    )
    assert settings.destinations[1].address == "OLDVIEW@10.1.2.3:11112"


def test_each_destination_gets_what_its_viewer_shows(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    pacs = Destination("PACS", "pacs", 104)
    viewer = Destination("OLDVIEW", "viewer", 104, key_images=True)
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
        create_deliveries(session, job.id, results, [pacs, viewer], "ris:2575")
    with sessions() as session:
        rows = session.execute(
            select(Result.kind, Delivery.destination, Delivery.channel).join(
                Result, Result.id == Delivery.result_id
            )
        ).all()
    engine.dispose()
    assert sorted(rows) == sorted(
        [
            ("seg", "PACS@pacs:104", "dicom"),
            ("key_image", "OLDVIEW@viewer:104", "dicom"),
            ("key_image", "OLDVIEW@viewer:104", "dicom"),
            ("sr", "PACS@pacs:104", "dicom"),
            ("sr", "OLDVIEW@viewer:104", "dicom"),
            ("oru", "ris:2575", "hl7"),
        ]
    )
