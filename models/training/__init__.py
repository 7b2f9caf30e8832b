"""Training and evaluation of the lumbar network (used by ``pacs-node train`` / ``evaluate``)."""
