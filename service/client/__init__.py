"""The CLI's side of the daemon: talking to its control API and showing its jobs.

* ``client``   ``DaemonClient``: the HTTP client for ``/v1`` (``notaryd submit/jobs/job/watch/cancel``)
* ``display``  terminal views of jobs (``submit --wait``, ``jobs``, ``watch``)

Nothing here runs in the server: ``service.daemon`` never imports this package.
"""
