"""What a route hands back to the HTTP shell: a status, a body and its type; and the error that carries one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
HTML = "text/html"


@dataclass(frozen=True)
class Request:
    """One decoded HTTP request; header names are lower-case, query values are lists."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Response:
    """`dropped`: no answer at all; the HTTP shell closes the connection (a lost answer)."""

    status: int
    body: bytes
    content_type: str = JSON
    dropped: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)  # extra headers (Retry-After, ...)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), JSON)


def text_response(status: int, text: str, content_type: str = TEXT) -> Response:
    return Response(status, text.encode("utf-8"), content_type)


class ApiError(Exception):
    """An error answer in the Vast shape: `{"success": false, "error": code, "msg": msg, ...extra}`.

    Request-decoding errors (`invalid_request`) come without `success`, as the service sends them.
    """

    def __init__(self, status: int, error: str, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.status = status
        self.error = error
        self.msg = msg
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        head: dict[str, Any] = {} if self.error == "invalid_request" else {"success": False}
        return {**head, "error": self.error, "msg": self.msg, **self.extra}

    def response(self) -> Response:
        return json_response(self.status, self.payload())


def decode_json_object(body: bytes, *, empty: Any = None) -> dict[str, Any]:
    """The JSON object in `body`; an empty body gives `empty` when that is a dict.

    Raises ApiError 400 `invalid_request` for anything that is not a JSON object.
    """
    if not body.strip() and isinstance(empty, dict):
        return dict(empty)
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_request", "Invalid json body") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_request", "Invalid json body: expected a JSON object")
    return value
