"""Where the node's HL7 messages say they come from and go to (MSH-3 to MSH-6, MSH-11)."""

from __future__ import annotations

from dataclasses import dataclass

from pacs_node.validation import validate_hl7_name


@dataclass(frozen=True)
class Hl7Addressing:
    """MSH fields of the node's HL7 messages, as the site's interface engine routes them.

    Attributes:
        sending_application: MSH-3.
        sending_facility: MSH-4.
        receiving_application: MSH-5.
        receiving_facility: MSH-6.
        processing_id: MSH-11: ``P`` production, ``T`` training, ``D`` debugging.
    """

    sending_application: str = "PACS_NODE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"

    def __post_init__(self) -> None:
        for name in (
            "sending_application",
            "sending_facility",
            "receiving_application",
            "receiving_facility",
        ):
            validate_hl7_name(getattr(self, name), name)
        if self.processing_id not in ("P", "T", "D"):
            raise ValueError(f"processing_id must be P, T or D, not {self.processing_id!r}")
