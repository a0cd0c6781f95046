"""`notaryd serve`: the long-running daemon (control API, job scheduler, Prometheus metrics).

Layout, one concept per module:

* ``app``             lifecycle: wiring, signals, grace period, one daemon per state dir
* ``scheduler``       queue + global limits; owns every job task
* ``execution``       one job's run, start to recorded outcome (``JobRunner`` protocol)
* ``flusher``         batched saves and snapshots of jobs' progress
* ``registry``        the jobs this process knows, over the stored history
* ``pipeline_runner`` the real ``JobRunner``: ``uploader.notary.pipeline.Notarizer`` per job
* ``slots``           ``PartSlots``: parts in flight across all jobs, closable for shutdown
* ``job_states``      a job's states (``JobState``, ``JobOutcome``) and ``JOB_LIFECYCLE``
* ``jobs``            the job record; its moves are ``job_states.JOB_LIFECYCLE``
* ``job_store``       ``JobStore`` over the ``jobs`` table
* ``snapshot``        ``JobSnapshot``: a job as the API, the CLI and notifications show it
* ``broker``          fan-out of job snapshots to server-sent-event subscribers (capped)
* ``metrics``         counters from events, per-job gauges from the jobs' ``Progress``
* ``api``             aiohttp control API (thin: validates, then delegates to the scheduler)
* ``openapi``         the OpenAPI 3.1 document served at ``/v1/openapi.json``
* ``token``           the bearer token for ``/v1`` (environment or a 0600 file in the state dir)
* ``logfmt``          structured ``key=value`` log lines on stderr

The CLI's client for this API and its views of jobs live in ``service.client``.
"""
