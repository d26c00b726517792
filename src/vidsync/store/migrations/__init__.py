"""Versioned schema migrations: one SQL file per version and backend, ``<backend>/NNNN_name.sql``.

Why files: each backend speaks its own SQL, and a reviewer should see every schema change as one
plain SQL file in order. Version N is the file numbered N; the numbers run 1, 2, 3... with no hole,
and a file is never edited once released: a change is a new file. Each backend records how far a
database got (SQLite in ``PRAGMA user_version``, PostgreSQL in its ``schema_migrations`` table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load(backend: str) -> list[Migration]:
    """The backend's migrations in version order; raises if the numbering has a hole."""
    found = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    if [mig.version for mig in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations must be numbered 1..n without a hole")
    return found
