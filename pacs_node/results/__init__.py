"""Result builders: DICOM SEG, TID 1500 SR, HL7 ORU^R01, key images (pure: no I/O).

The worker pipeline maps model output onto :mod:`pacs_node.results.inputs` and calls:

- :func:`~pacs_node.results.seg.build_seg` -> ``highdicom.seg.Segmentation``
- :func:`~pacs_node.results.sr.build_sr` / :func:`~pacs_node.results.sr.build_not_analysed_sr`
  -> ``highdicom.sr.Comprehensive3DSR``
- :func:`~pacs_node.results.hl7.build_oru` -> ``hl7apy.core.Message``
- :func:`~pacs_node.results.key_images.build_key_images` -> Secondary Capture datasets

Every identity (UIDs, MSH-10) and timestamp derives from the job, so rebuilding is idempotent.
"""
