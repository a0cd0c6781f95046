"""Apple's Notary REST API: team-key JWTs (``auth``), the HTTP client (``client``), its errors,
the log report (``logreport``), the submission store (``store``) and the end-to-end pipeline
(``pipeline.Notarizer``: hash, submit, upload, wait, log; ``artifact`` for bundles and stapling).

Import from the modules; the package's public names are in ``uploader.__all__``.
"""
