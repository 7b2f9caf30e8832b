"""Result delivery: C-STORE SCU to DICOM destinations, and the delivery ledger with retries."""
