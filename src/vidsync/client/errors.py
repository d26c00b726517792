"""What the SDK raises: one base class, so a caller can catch everything from the SDK at once."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the SDK raises on purpose."""


class ApiError(ClientError):
    """The server answered with an error: ``status`` (HTTP), ``code`` (stable, machine-readable),
    ``message`` (for people) and ``details`` (the error object's other fields, e.g. ``missing``
    or ``index``)."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class ServerUnreachable(ClientError):
    """No answer from the server (connection refused or reset, timeout): worth retrying later."""


class ProjectRemoved(ClientError):
    """The caller is no longer a member of the project, or it was deleted; following it ended."""

    def __init__(self, project_id: str, reason: str) -> None:
        super().__init__(f"project {project_id}: {reason}")
        self.project_id = project_id
        self.reason = reason


class ContentMismatch(ClientError):
    """Bytes did not hash to what they should: a local file changed while it was being uploaded,
    or downloaded content did not match its manifest. Nothing wrong was stored or kept."""
