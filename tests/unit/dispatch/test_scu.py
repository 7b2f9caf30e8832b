"""C-STORE SCU against a real SCP: per-object outcomes, refusals, a peer that is down."""

from __future__ import annotations

import socket
from pathlib import Path

from pacs_node.destinations import Destination
from pacs_node.dispatch.dicom import send_files
from tests.unit.dispatch.conftest import StoreSCP
from tests.unit.worker.conftest import phantom_study  # noqa: F401  (fixture)
from worker.phantom import WrittenStudy


def mr_files(study: WrittenStudy) -> list[Path]:
    return list(next(s.paths for s in study.series if s.role == "SAG_T2"))[:3]


def test_every_object_is_stored_over_one_association(
    store_scp: StoreSCP,
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    files = mr_files(phantom_study)
    outcomes = send_files(
        Destination.dicom("PACS", "127.0.0.1", store_scp.port), files, calling_ae="LUMBAR_NODE"
    )
    assert [(o.delivered, o.status) for o in outcomes] == [(True, "0x0000")] * len(files)
    assert len(store_scp.received) == 3


def test_refused_objects_are_reported_with_their_status(
    store_scp: StoreSCP,
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    store_scp.refuse = True
    outcomes = send_files(
        Destination.dicom("PACS", "127.0.0.1", store_scp.port),
        mr_files(phantom_study),
        calling_ae="LUMBAR_NODE",
    )
    assert {(o.delivered, o.status, o.error) for o in outcomes} == {
        (False, "0xA700", "refused by peer")
    }


def test_a_peer_that_is_down_fails_every_object(phantom_study: WrittenStudy) -> None:  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    outcomes = send_files(
        Destination.dicom("PACS", "127.0.0.1", port),
        mr_files(phantom_study),
        calling_ae="NODE",
        timeout=2,
    )
    assert {(o.delivered, o.status, o.error) for o in outcomes} == {
        (False, None, "cannot connect: [Errno 111] Connection refused")
    }
