"""pacs-node: a DICOM/PACS integration node for lumbar spine MRI AI."""
