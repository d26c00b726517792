"""Vidsync: share a project folder live with collaborators.

Packages, one concept each:
- ``store``: the durable state (accounts, projects, the per-project event log), SQLite or PostgreSQL.
- ``realtime``: Engine.IO/Socket.IO on top of aiohttp, and the hub that fans events out.
- ``server``: the HTTP API and the wiring of the process (``vidsync serve``).
"""

__version__ = "0.1.0"
