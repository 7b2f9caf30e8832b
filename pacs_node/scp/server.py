"""The DICOM SCP: an AE that accepts C-ECHO and C-STORE of every storage SOP class, and the
storage commitment reports of the PACSs the node asked for commitment (N-EVENT-REPORT)."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any

from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    Verification,
)

from pacs_node.config import Settings
from pacs_node.db.ledger import InstanceLedger
from pacs_node.dispatch.commitment import CommitmentJournal, receive_report
from pacs_node.instance_store import InstanceStore
from pacs_node.scp.handlers import (
    Associations,
    handle_aborted,
    handle_accepted,
    handle_echo,
    handle_rejected,
    handle_released,
    handle_store,
)
from pacs_node.scp.transport import (
    BulkRequestHandler,
    NodeAE,
    NodeAssociationServer,
    SharedPortAssociationServer,
)
from pacs_node.spool import Spool


def build_ae(settings: Settings) -> NodeAE:
    """An AE accepting Verification and all storage classes in every transfer syntax.

    Compressed transfer syntaxes are accepted as sent and decoded later, by the worker.
    """
    ae = NodeAE(ae_title=settings.ae_title)
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.maximum_associations = settings.max_associations
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.network_timeout = settings.network_timeout
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    if not settings.accepts_any_ae:
        ae.require_calling_aet = list(settings.allowed_aes)
    ae.require_called_aet = settings.check_called_ae
    return ae


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS 1.2+ server context; with a CA, client certificates are required.

    Raises:
        OSError: if a certificate, key or CA file cannot be read.
        ssl.SSLError: if they do not form a valid chain.
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        context.load_verify_locations(settings.tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass
class RunningSCP:
    """A started, non-blocking SCP."""

    ae: NodeAE
    server: NodeAssociationServer

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Stop accepting, and abort live associations."""
        self.server.shutdown()
        self.ae.shutdown()


def start_scp(
    settings: Settings,
    spool: Spool,
    ledger: InstanceLedger,
    commitments: CommitmentJournal | None = None,
    store: InstanceStore | None = None,
    *,
    shared_port: bool = False,
) -> RunningSCP:
    """Start the SCP in background threads on ``settings.host:settings.port``, storing through
    ``store`` (shared with the node's other receiving endpoints; its own when omitted).

    With ``shared_port``, other processes may listen on the same port (``SO_REUSEPORT``).

    With ``commitments``, it also accepts storage commitment reports: a PACS opens an
    association as SCP of the Storage Commitment Push Model (role selection) and sends an
    N-EVENT-REPORT, which goes to the journal.

    Raises:
        OSError: if the address cannot be bound (port in use) or TLS files are unreadable.
    """
    ae = build_ae(settings)
    associations = Associations()
    store = store or InstanceStore(spool, ledger)
    handlers: list[Any] = [
        (evt.EVT_ACCEPTED, handle_accepted),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [spool, store, ledger, associations]),
        (evt.EVT_RELEASED, handle_released, [ledger, associations]),
        (evt.EVT_ABORTED, handle_aborted, [associations]),
        (evt.EVT_REJECTED, handle_rejected, [ledger]),
    ]
    if commitments is not None:
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        handlers.append((evt.EVT_N_EVENT_REPORT, receive_report, [commitments]))
    server = ae.make_server(
        (settings.host, settings.port),
        evt_handlers=handlers,
        ssl_context=tls_context(settings),
        server_class=SharedPortAssociationServer if shared_port else NodeAssociationServer,
        request_handler=BulkRequestHandler,
    )
    # As AE.start_server(block=False) does, with our server class: the AE owns the server.
    assert isinstance(server, NodeAssociationServer)
    ae._servers.append(server)
    threading.Thread(target=server.serve_forever, name="scp-accept", daemon=True).start()
    return RunningSCP(ae, server)
