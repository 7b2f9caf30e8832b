"""``pacs-node export``: a de-identified research export of analysed studies.

``selection`` picks the jobs, ``deidentify`` applies the PS3.15 Basic Application Level
Confidentiality Profile (with dicognito), ``writer`` lays the export out for ``pacs-node train
--dicom`` with a manifest and a results summary per study, ``command`` is the CLI.
"""
