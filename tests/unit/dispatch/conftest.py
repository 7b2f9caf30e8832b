"""A real pynetdicom storage SCP on loopback that keeps what it receives, or refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
REFUSED = 0xA700


@dataclass
class StoreSCP:
    """What the SCP received (SOP Instance UIDs, in order) and what it should answer."""

    port: int = 0
    received: list[str] = field(default_factory=list)
    refuse: bool = False
    server: ThreadedAssociationServer | None = None

    def handle(self, event: Event) -> int:
        dataset: Dataset = event.dataset
        if self.refuse:
            return REFUSED
        self.received.append(str(dataset.SOPInstanceUID))
        return 0x0000


@pytest.fixture
def store_scp() -> Iterator[StoreSCP]:
    """A storage SCP (AE title PACS) accepting SEG, SR and MR."""
    scp = StoreSCP()
    ae = AE(ae_title="PACS")
    for sop_class in (SEG_CLASS, COMPREHENSIVE_3D_SR, MR_IMAGE):
        ae.add_supported_context(sop_class)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, scp.handle)]
    )
    scp.server = server
    scp.port = int(server.server_address[1])
    yield scp
    server.shutdown()
