"""Storage commitment as the sender asks for it: the flag, the N-ACTION against a real pynetdicom
peer, the report on the sending association, and the report's parsing."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)
from pynetdicom.transport import ThreadedAssociationServer

from pacs_node.destinations import Destination
from pacs_node.dispatch.commitment import (
    CommitmentReport,
    ReportError,
    parse_report,
    receive_report,
)
from pacs_node.dispatch.dicom import send_files
from tests.unit.dispatch.conftest import COMPREHENSIVE_3D_SR, MR_IMAGE, SEG_CLASS
from tests.unit.dispatch.test_scu import mr_files
from tests.unit.worker.conftest import phantom_study  # noqa: F401  (fixture)
from worker.phantom import WrittenStudy

UID_ROOT = "1.2.826.0.1.99."


@dataclass
class Journal:
    """Records requests and reports, in order, with what the peer had seen at each request."""

    peer: CommitmentSCP
    calls: list[tuple[str, object]] = field(default_factory=list)
    actions_seen: list[int] = field(default_factory=list)
    """How many N-ACTIONs the peer had received at each request."""
    settles: int = 1

    def requested(
        self, destination: str, transaction_uid: str, sop_instance_uids: Sequence[str]
    ) -> None:
        self.calls.append(("requested", (destination, transaction_uid, list(sop_instance_uids))))
        self.actions_seen.append(len(self.peer.actions))

    def reported(self, report: CommitmentReport) -> int:
        self.calls.append(("reported", report))
        return self.settles


@dataclass
class CommitmentSCP:
    """A storage SCP that also answers storage commitment requests (or refuses them)."""

    status: int = 0x0000
    report_on_association: bool = False
    actions: list[Dataset] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    port: int = 0
    server: ThreadedAssociationServer | None = None

    def handle_store(self, event: Event) -> int:
        self.stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    def handle_action(self, event: Event) -> tuple[int, None]:
        info = event.action_information
        self.actions.append(info)
        if self.report_on_association:
            threading.Thread(target=self._report, args=(event.assoc, info)).start()
        return self.status, None

    @staticmethod
    def _report(assoc: object, info: Dataset) -> None:
        """Commit everything, reported on the requestor's association once it has its answer."""
        report = Dataset()
        report.TransactionUID = info.TransactionUID
        report.ReferencedSOPSequence = info.ReferencedSOPSequence
        assoc.send_n_event_report(  # type: ignore[attr-defined]
            report, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )


def start_peer(scp: CommitmentSCP, *, commitment: bool = True) -> CommitmentSCP:
    ae = AE(ae_title="PACS")
    for sop_class in (SEG_CLASS, COMPREHENSIVE_3D_SR, MR_IMAGE):
        ae.add_supported_context(sop_class)
    if commitment:
        ae.add_supported_context(StorageCommitmentPushModel)
    scp.server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[
            (evt.EVT_C_STORE, scp.handle_store),
            (evt.EVT_N_ACTION, scp.handle_action),
        ],
    )
    scp.port = int(scp.server.server_address[1])
    return scp


@pytest.fixture
def peer() -> Iterator[CommitmentSCP]:
    scp = start_peer(CommitmentSCP())
    yield scp
    assert scp.server is not None
    scp.server.shutdown()


def commit_to(port: int) -> Destination:
    return Destination.parse_dicom(f"PACS@127.0.0.1:{port}/commit")


def test_the_commit_flag_parses_in_either_order_with_key_images() -> None:
    plain = Destination.parse_dicom("PACS@pacs:104")
    committed = Destination.parse_dicom("main=PACS@pacs:104/commit")
    both = [
        Destination.parse_dicom("viewer=VIEW@10.1.2.3:11112/key-images/commit"),
        Destination.parse_dicom("viewer=VIEW@10.1.2.3:11112/commit/key-images"),
    ]
    assert not plain.commit
    assert (committed.name, committed.port, committed.commit) == ("main", 104, True)
    assert both[0] == both[1]
    assert both[0].commit and both[0].kind.value == "dicom-key-images"
    with pytest.raises(ValueError, match=r"\[/key-images\]\[/commit\]"):
        Destination.parse_dicom("PACS@pacs:104/commit/commit")


def test_stored_objects_are_committed_under_a_fresh_transaction_uid(
    peer: CommitmentSCP,
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    journal = Journal(peer)
    files = mr_files(phantom_study)
    outcomes = send_files(
        commit_to(peer.port), files, calling_ae="NODE", uid_root=UID_ROOT, commitments=journal
    )
    ((call, (name, transaction_uid, uids)),) = journal.calls  # type: ignore[misc]
    assert (call, name, uids) == ("requested", "PACS", peer.stored)
    assert transaction_uid.startswith(UID_ROOT)
    assert [(o.delivered, o.status, o.commitment_uid) for o in outcomes] == [
        (True, "0x0000", transaction_uid)
    ] * len(files)
    (action,) = peer.actions
    assert action.TransactionUID == transaction_uid
    assert [
        (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
        for item in action.ReferencedSOPSequence
    ] == [(MR_IMAGE, uid) for uid in peer.stored]
    send_files(commit_to(peer.port), files[:1], calling_ae="NODE", commitments=journal)
    assert journal.calls[1][1][1] != transaction_uid  # type: ignore[index]
    assert journal.actions_seen == [0, 1]  # each request recorded before its N-ACTION


def test_a_report_on_the_sending_association_is_recorded(
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    peer = start_peer(CommitmentSCP(report_on_association=True))
    journal = Journal(peer)
    try:
        outcomes = send_files(
            commit_to(peer.port), mr_files(phantom_study), calling_ae="NODE", commitments=journal
        )
    finally:
        assert peer.server is not None
        peer.server.shutdown()
    (requested, reported) = journal.calls
    assert reported[0] == "reported"
    report = reported[1]
    assert isinstance(report, CommitmentReport)
    assert report.transaction_uid == requested[1][1] == outcomes[0].commitment_uid  # type: ignore[index]
    assert sorted(report.committed) == sorted(peer.stored) and not report.failed


def test_a_refused_request_fails_the_stored_objects(
    peer: CommitmentSCP,
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    peer.status = 0x0110
    outcomes = send_files(
        commit_to(peer.port), mr_files(phantom_study), calling_ae="NODE", commitments=Journal(peer)
    )
    assert {(o.delivered, o.status, o.error, o.commitment_uid) for o in outcomes} == {
        (False, "0x0110", "storage commitment request refused by peer", None)
    }


def test_a_peer_without_storage_commitment_fails_without_a_request(
    phantom_study: WrittenStudy,  # noqa: F811
) -> None:
    peer = start_peer(CommitmentSCP(), commitment=False)
    journal = Journal(peer)
    try:
        outcomes = send_files(
            commit_to(peer.port), mr_files(phantom_study), calling_ae="NODE", commitments=journal
        )
    finally:
        assert peer.server is not None
        peer.server.shutdown()
    assert {(o.delivered, o.error) for o in outcomes} == {
        (False, "the peer does not support storage commitment")
    }
    assert journal.calls == [] and len(peer.stored) == len(outcomes)


def test_a_commit_destination_needs_a_journal(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a journal"):
        send_files(commit_to(104), [tmp_path / "x.dcm"], calling_ae="NODE")


def report_item(uid: str, reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = SEG_CLASS
    item.ReferencedSOPInstanceUID = uid
    if reason is not None:
        item.FailureReason = reason
    return item


def test_reports_are_parsed_and_malformed_ones_refused() -> None:
    info = Dataset()
    info.TransactionUID = "1.2.3"
    info.ReferencedSOPSequence = [report_item("1.2.3.1")]
    info.FailedSOPSequence = [report_item("1.2.3.2", 0x0112), report_item("1.2.3.3")]
    assert parse_report(2, info) == CommitmentReport(
        "1.2.3", frozenset({"1.2.3.1"}), {"1.2.3.2": 0x0112, "1.2.3.3": 0x0110}
    )
    with pytest.raises(ReportError, match="event type 3"):
        parse_report(3, info)
    with pytest.raises(ReportError, match="no Transaction UID"):
        parse_report(1, Dataset())
    info.ReferencedSOPSequence = [Dataset()]
    with pytest.raises(ReportError, match="no Referenced SOP Instance UID"):
        parse_report(1, info)


def fake_event(event_type: int | None, info: Dataset | None) -> Event:
    peer = SimpleNamespace(ae_title="ORTHANC ", address="127.0.0.1")
    assoc = SimpleNamespace(requestor=peer, acceptor=peer, is_requestor=False)
    return SimpleNamespace(assoc=assoc, event_type=event_type, event_information=info)  # type: ignore[return-value]


def test_reports_are_answered_success_even_for_an_unknown_transaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    info = Dataset()
    info.TransactionUID = "1.2.3.4.5.6"
    info.ReferencedSOPSequence = [report_item("1.2.3.4.5.7")]
    journal = Journal(CommitmentSCP(), settles=0)
    assert receive_report(fake_event(1, info), journal) == (0x0000, None)
    assert receive_report(fake_event(None, info), journal) == (0x0115, None)
    assert len(journal.calls) == 1
    assert "names no delivery awaiting it" in caplog.text
    assert "1.2.3.4.5" not in caplog.text
