"""Errors that reach users: each carries a stable code, a message and an HTTP status."""

from __future__ import annotations

from typing import Any


class VistudioError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(VistudioError):
    code = "bad_request"
    status = 400


class NotFound(VistudioError):
    code = "not_found"
    status = 404


class Conflict(VistudioError):
    code = "conflict"
    status = 409


class Immutable(Conflict):
    code = "immutable"


class TooLarge(VistudioError):
    code = "too_large"
    status = 413


class InvalidInput(VistudioError):
    code = "invalid_input"
    status = 422


class Unauthorized(VistudioError):
    code = "unauthorized"
    status = 401


class JobFailed(VistudioError):
    code = "job_failed"
    status = 500


class ModelUnavailable(VistudioError):
    code = "model_unavailable"
    status = 503
