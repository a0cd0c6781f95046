"""Apple's Notary REST API: team-key JWTs (``auth``), the HTTP client (``client``), its errors,
the log report (``logreport``), the submission store (``store``) and the end-to-end pipeline
(``pipeline.Notarizer``, a runner of stages: ``never_twice``, preflight, ``artifact`` to package,
hash, ``submit_once``, upload, ``verdict``, ``artifact`` to staple; ``model`` for its types).

Import from the modules; the package's public names are in ``uploader.__all__``.
"""
