"""Each package's tables as numbered migrations, versioned per package in one SQLite file.

The library (``uploader``) and the packages built on it share one database, but each owns
its tables: a ``Schema`` is one package's append-only list of migrations, and the
``schema_versions`` table records how many of them have run. The library's schema is applied
whenever a ``Database`` opens; another package asks for its own with ``Database.require``, so the
library never needs to know another package's tables.

A package's pending migrations run in one transaction together with its ``schema_versions`` row,
so a crash leaves it at either the old or the new version, never between; the versions are read
again under the write lock, so two processes opening one database migrate it once.

``PRAGMA user_version`` says how versions are kept. ``LAYOUT`` (4): per package, in
``schema_versions``. 1 to 3: a database of the first release, whose single sequence of
migrations created every package's tables; it is adopted on first open (its number kept as the
``RELEASED`` row) and each ``Schema`` says which of its versions each of those numbers means.
The first release refuses ``LAYOUT`` as a newer schema, as this one refuses anything above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

LAYOUT = 4
RELEASED = "(single sequence of the first release)"


@dataclass(frozen=True)
class Schema:
    """One package's migrations. Append only: never edit a released migration."""

    package: str
    migrations: tuple[str, ...]
    released: Mapping[int, int] = field(default_factory=dict)
    """The version this package is at in a first-release database of each ``user_version``."""

    @property
    def version(self) -> int:
        return len(self.migrations)

    def pending(self, current: int) -> list[tuple[int, str]]:
        """The migrations after ``current``, numbered from 1."""
        return [(n, sql) for n, sql in enumerate(self.migrations, start=1) if n > current]


VERSIONS_TABLE = """
CREATE TABLE schema_versions (
    package TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""
