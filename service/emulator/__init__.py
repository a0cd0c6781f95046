"""Local stand-ins for the outside world: the Notary service, its S3 bucket, SeaweedFS, a fault proxy.

Nothing here is imported by the library; tests, ``notaryd demo``, ``scripts/soak.py`` and the
benchmarks use it. One concern per module:

* ``notary`` — ``NotaryEmulator``: wires the pieces below together and owns the servers'
  lifetime; ``BackgroundEmulator`` runs it for synchronous callers (``background.LoopThread``).
* ``notary_api`` — the ``/notary/v2`` routes and handlers, behind a gate of ``auth`` (team keys,
  JWT rules, the hourly request budget) and ``faults`` (``Faults`` knobs, one ``FaultPolicy``).
* ``submissions`` — submissions and the upload credentials issued with each.
* ``s3front`` — the upload bucket: the issued credentials (checked with ``sigv4``), their
  scope, PutObject-only mode.
* ``processing`` and ``verdicts`` — what happens once an object lands: inspection, verdict
  rules, the developer log, webhooks; ``presign`` — signed log URLs and their download.
* ``tickets`` — the stapling ticket lookup.
* ``responses`` — the JSON:API, plain-text and S3 XML bodies all of the above answer with.
* ``faultproxy`` — the hostile network in front of S3: ``faultplan`` decides (seeded draws,
  outage, expiry), ``relay`` passes requests through, ``uploader.throttle`` shapes bandwidth.
* ``seaweed`` — a real SeaweedFS S3 server; ``sample``/``sample_app`` — archives to notarise.

The emulator's own servers listen on port 0 and report the port they were given.
"""
