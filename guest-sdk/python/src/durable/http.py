"""A small blocking outbound HTTP client over `wasi:http/outgoing-handler` 0.2, mirroring the
Rust SDK's `durable_sdk::http`.

**Call it only inside a step.** A response is not deterministic: code outside a step that
branches on it would diverge from the journal on replay. Inside a step the response is used
once and only the step's result is replayed.

The host forwards only requests to the hosts its operator allows (`--allow-outbound`). A
denied or failed request raises `HttpError`, whose message names the wasi error code (e.g.
`HttpRequestDenied`, `ConnectionRefused`). A non-2xx status is not an error: check
`Response.status` or `Response.ok`.

The request body is written and finished before `outgoing-handler.handle` is called (racing
the two shows spurious connection resets); only a body larger than the host buffers at once
is streamed after the request is sent.
"""

from __future__ import annotations

import json as _json
from typing import Any, Mapping, Optional

from .errors import HttpError, _dumps

# Imported here, at build time: a component has no filesystem at run time, so a module
# first imported inside a handler is not found (ModuleNotFoundError).
try:  # pragma: no cover - only inside componentize-py
    from componentize_py_types import Err
    from wit_world.imports import outgoing_handler, streams
    from wit_world.imports import wasi_http_types as h

    _AVAILABLE = True
except ImportError:  # CPython outside a component
    _AVAILABLE = False

#: How many bytes to ask for per read of the response body.
READ_CHUNK = 64 * 1024


class Response:
    """A response: the status, the headers (lower-case names) and the whole body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises `HttpError` when it is not JSON."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise HttpError(f"the response body (status {self.status}) is not JSON: {e}") from None

    def header(self, name: str) -> Optional[str]:
        """The first value of a header, or `None`."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def __repr__(self) -> str:
        return f"Response(status={self.status}, {len(self.body)} bytes)"


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, authority, path with query) of an http(s) URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("missing scheme")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("only http and https are supported")
    rest = rest.split("#", 1)[0]
    end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, path = rest[:end], rest[end:]
    if not authority:
        raise ValueError("missing host")
    if "@" in authority:
        raise ValueError("credentials in URLs are not supported")
    if any(c.isspace() for c in authority + path):
        raise ValueError("whitespace in URL")
    if not path.startswith("/"):
        path = "/" + path
    return scheme, authority, path


def _code(e: Any) -> str:
    """A wasi `error-code` as its case name (`HttpRequestDenied`)."""
    name = type(e).__name__
    return name.split("_", 1)[1] if name.startswith("ErrorCode_") else repr(e)


def _method(name: str) -> Any:
    upper = name.upper()
    cls = getattr(h, "Method_" + upper.capitalize(), None)
    if upper in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH") and cls:
        return cls()
    return h.Method_Other(name)


def request(
    method: str,
    url: str,
    *,
    body: bytes | str | None = None,
    json: Any = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Response:
    """Send one request and read the whole response. `json` sends a JSON body with
    `content-type: application/json`."""
    if not _AVAILABLE:  # pragma: no cover
        raise HttpError("outbound HTTP is only available inside a component")
    try:
        scheme, authority, path = _split(url)
    except ValueError as why:
        raise HttpError(f"invalid URL {url!r}: {why}") from None
    what = f"{method} {url}"

    def fail(why: str) -> HttpError:
        return HttpError(f"{what} failed: {why}")

    entries = [(k, v.encode()) for k, v in (headers or {}).items()]
    if json is not None:
        body = _dumps(json)
        if not any(k.lower() == "content-type" for k, _ in entries):
            entries.append(("content-type", b"application/json"))
    data = body.encode() if isinstance(body, str) else (body or b"")

    try:
        fields = h.Fields.from_list(entries)
    except Err as e:
        raise fail(f"invalid header: {e.value!r}") from None
    req = h.OutgoingRequest(fields)
    try:
        req.set_method(_method(method))
        req.set_scheme(h.Scheme_Https() if scheme == "https" else h.Scheme_Http())
        req.set_authority(authority)
        req.set_path_with_query(path)
    except Err:
        raise fail("invalid request line") from None
    out_body = req.body()
    stream = out_body.write()
    try:
        written = _write_some(stream, data)
        if written == len(data):
            # The usual case: the whole body is with the host; finish it, then send.
            stream.__exit__(None, None, None)
            h.OutgoingBody.finish(out_body, None)
            future = outgoing_handler.handle(req, None)
        else:
            # A body larger than the host buffers: send, then stream the rest.
            future = outgoing_handler.handle(req, None)
            view = memoryview(data)[written:]
            while view:
                n = _write_some(stream, view)
                view = view[n:]
                if view:
                    stream.subscribe().block()
            stream.blocking_flush()
            stream.__exit__(None, None, None)
            h.OutgoingBody.finish(out_body, None)
    except Err as e:
        raise fail(_code(e.value)) from None

    while True:
        got = future.get()
        if got is None:
            future.subscribe().block()
            continue
        if isinstance(got, Err):
            raise fail("the response was already taken")
        inner = got.value
        if isinstance(inner, Err):
            raise fail(_code(inner.value))
        response = inner.value
        break

    status = response.status()
    resp_headers = [(k, v.decode("utf-8", errors="replace")) for k, v in response.headers().entries()]
    incoming = response.consume()
    src = incoming.stream()
    chunks = []
    while True:
        try:
            chunks.append(src.blocking_read(READ_CHUNK))
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise fail("reading the response body failed") from None
    src.__exit__(None, None, None)
    return Response(status, resp_headers, b"".join(chunks))


def _write_some(stream: Any, data) -> int:
    """Write what the stream takes without blocking; the count written."""
    written = 0
    while written < len(data):
        permitted = stream.check_write()
        if permitted == 0:
            break
        end = min(len(data), written + permitted)
        stream.write(bytes(data[written:end]))
        written = end
    return written


def get(url: str, *, headers: Optional[Mapping[str, str]] = None) -> Response:
    """GET `url`."""
    return request("GET", url, headers=headers)


def post_json(url: str, value: Any, *, headers: Optional[Mapping[str, str]] = None) -> Response:
    """POST `value` as JSON to `url`."""
    return request("POST", url, json=value, headers=headers)
