"""The one error type the API raises, so every failure leaves as ``{error: {code, message}}``."""

from __future__ import annotations


class ApiError(Exception):
    """A client-visible error: an HTTP status, a stable machine code and a human message."""

    def __init__(self, status: int, code: str, message: str, *, beside: dict | None = None,
                 **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        # Fields a contract puts beside ``error`` rather than in it (409 ``conflicts``).
        self.beside = beside or {}

    def to_json(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        body.update(self.extra)
        return {"error": body, **self.beside}


def bad_request(message: str, code: str = "bad_request", **extra: object) -> ApiError:
    return ApiError(400, code, message, **extra)


def unauthorized(message: str = "missing or invalid token") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)
