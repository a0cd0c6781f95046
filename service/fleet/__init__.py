"""A fleet of ``notaryd serve`` workers sharing one PostgreSQL store (issue 22).

* ``queue``: ``Fleet`` claims unfinished jobs of the shared ``jobs`` table (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL) under a lease with a generation; renewals, fenced writes (every write
  checks the generation), heartbeats, queue depth and live workers for ``/metrics``.
* ``budget``: ``SharedBudget``, a token bucket in the database for the team key's Notary API
  request rate, so twenty workers do not earn twenty times the 429s.
* ``migrations``: their tables, the package ``service.fleet`` of ``schema_versions``.

The same code runs on the SQLite default (one worker: the claims are trivially its own), so
every test of it runs on both stores.
"""
