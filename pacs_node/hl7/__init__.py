"""HL7 v2 over MLLP: our client (framing, timeouts, ACK checking) and a small test receiver."""
