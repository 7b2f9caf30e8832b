"""A pure-Python DICOM receiver standing in for the PACS in ``pacs-node demo``.

It accepts every storage SOP class (SEG and SR included) and writes each received object to
``<folder>/<SOPInstanceUID>.dcm``, so the demo can check what came back without DCMTK.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from pacs_node.validation import validate_uid

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000


def _store(event: Event, folder: Path) -> int:
    """Write the received object to ``folder``; answer success or "cannot understand"."""
    try:
        sop_instance_uid = validate_uid(str(cast(C_STORE, event.request).AffectedSOPInstanceUID))
    except ValueError:
        return CANNOT_UNDERSTAND
    target = folder / f"{sop_instance_uid}.dcm"
    partial = target.with_suffix(".part")
    partial.write_bytes(event.encoded_dataset())
    partial.replace(target)
    return SUCCESS


class DemoPacs:
    """A storage SCP on loopback that keeps what it receives in ``folder``."""

    def __init__(self, folder: Path, ae_title: str = "DEMO_PACS") -> None:
        self.folder = folder
        self.ae_title = ae_title
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: if the receiver is not started.
        """
        if self._server is None:
            raise RuntimeError("the demo PACS is not started")
        return int(self._server.server_address[1])

    def start(self) -> DemoPacs:
        """Listen on a free loopback port.

        Raises:
            OSError: if no port can be bound or the folder cannot be created.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, _store, [self.folder])],
        )
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def files(self) -> list[Path]:
        """Objects received so far, by file name."""
        return sorted(self.folder.glob("*.dcm"))
