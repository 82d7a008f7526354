"""Who may talk to a Sleuth server: one token, the Host names it answers to, and same-origin requests only.

Both HTTP servers (the API, ``sleuth serve api``, and the web chat, ``sleuth ui``) are closed by
default, also on loopback, because a web page the analyst visits can reach loopback:

- **Token**: every route that reads or writes data needs the server's token, ``SLEUTH_API_KEY``
  or, when that is not set, one generated for the run and printed at start. The API takes it as
  ``Authorization: Bearer`` or ``X-API-Key``; the web chat as ``?token=`` in the address it
  prints, which it swaps for an HttpOnly, SameSite=Strict cookie.
- **Host allowlist**: a request whose ``Host`` is not a name of this server (loopback names, the
  address it listens on, this machine's names when it listens on all interfaces, and
  ``SLEUTH_ALLOWED_HOSTS``) is refused, so DNS rebinding cannot turn a foreign name into loopback.
- **Origin check**: a request a browser marks as coming from another site (an ``Origin`` other
  than the server's own, or ``Sec-Fetch-Site: cross-site`` on anything but a navigation) is
  refused before it reaches a route, so a foreign page can neither write (a form upload needs no
  CORS preflight) nor read. ``SLEUTH_ALLOWED_ORIGINS`` trusts more origins. No CORS headers are
  ever sent.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Self
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

KEY_ENV = "SLEUTH_API_KEY"
HOSTS_ENV = "SLEUTH_ALLOWED_HOSTS"
ORIGINS_ENV = "SLEUTH_ALLOWED_ORIGINS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 - names of "all interfaces", compared, not bound


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _env_list(name: str) -> list[str]:
    return [item.strip().lower() for item in os.environ.get(name, "").split(",") if item.strip()]


def _machine_names() -> list[str]:
    """This machine's host names and addresses: what other machines use to reach an all-interfaces bind."""
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names.update(info[4][0] for info in socket.getaddrinfo(name, None))
        except OSError:
            continue
    return sorted(name.lower() for name in names if name)


class Access(BaseModel):
    """The token, the Host names and the extra Origins one server accepts."""

    token: str = Field(repr=False, min_length=1)
    generated: bool = Field(default=False, description="Whether the token was generated for this run "
                            f"(no {KEY_ENV} was set).")
    hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_NAMES), description="Accepted Host names "
                             "(lower case, no port); '*' accepts any.")
    origins: list[str] = Field(default_factory=list, description="Origins trusted besides the server's own.")

    @classmethod
    def for_server(cls, host: str = "127.0.0.1", *, token: str | None = None) -> Self:
        """The access of a server listening on ``host``: ``token``, else ``SLEUTH_API_KEY``, else a new one."""
        token = token or os.environ.get(KEY_ENV) or None
        hosts = [*LOOPBACK_NAMES]
        if host.lower() in ANY_ADDRESS:
            hosts += _machine_names()
        else:
            hosts.append(host.strip("[]").lower())
        hosts += _env_list(HOSTS_ENV)
        return cls(token=token or secrets.token_urlsafe(24), generated=token is None,
                   hosts=list(dict.fromkeys(hosts)), origins=_env_list(ORIGINS_ENV))

    def accepts_token(self, given: str | None) -> bool:
        return bool(given) and secrets.compare_digest(str(given).encode(), self.token.encode())

    def host_allowed(self, host_header: str | None) -> bool:
        if "*" in self.hosts:
            return True
        return _hostname(host_header or "") in self.hosts

    def origin_refusal(self, headers: Headers) -> str | None:
        """Why a request is a cross-site one this server refuses (None when it is not)."""
        origin = headers.get("origin")
        if origin is not None:
            own = {f"{scheme}://{headers.get('host', '').lower()}" for scheme in ("http", "https")}
            if origin.lower() not in own and origin.lower() not in self.origins:
                return f"requests from {origin[:100]} are refused"
        elif headers.get("sec-fetch-site") == "cross-site" and headers.get("sec-fetch-mode") != "navigate":
            return "cross-site requests are refused"
        return None


def _hostname(host_header: str) -> str:
    """The name in a Host header, without the port (``[::1]:8080`` -> ``::1``)."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _refuse(status: int, message: str, hint: str) -> Response:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


class AccessGuard:
    """ASGI middleware enforcing an :class:`Access`: Host and Origin on every request; the token too
    when ``token_required`` (paths in ``open_paths`` excepted).

    With ``cookie`` set, a GET carrying ``?token=<token>`` is answered with a redirect to the same
    address without it and the token in that cookie (HttpOnly, SameSite=Strict), which later
    requests of the page carry; the token is also accepted as a bearer token or ``X-API-Key``.
    """

    def __init__(self, app: ASGIApp, *, access: Access, token_required: bool = False, cookie: str | None = None,
                 open_paths: Iterable[str] = (), hint: str = "") -> None:
        self.app = app
        self.access = access
        self.token_required = token_required
        self.cookie = cookie
        self.open_paths = frozenset(open_paths)
        self.hint = hint or "send the server's token as `Authorization: Bearer <token>`"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal(scope, receive, send)

    def _check(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if not self.access.host_allowed(headers.get("host")):
            return _refuse(421, f"this server does not answer to the host name '{headers.get('host', '')[:100]}'",
                           f"use http://127.0.0.1 or one of its names; add names with {HOSTS_ENV}")
        why = self.access.origin_refusal(headers)
        if why is not None:
            return _refuse(403, why, f"only pages of this server may call it; trust more origins with {ORIGINS_ENV}")
        if not self.token_required or scope["path"] in self.open_paths:
            return None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if self.cookie and scope["type"] == "http" and scope["method"] == "GET" and "token" in query:
            if not self.access.accepts_token(query["token"]):
                return _refuse(401, "wrong token in the address", "open the address the server printed at start")
            rest = urlencode({key: value for key, value in query.items() if key != "token"})
            response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(self.cookie, self.access.token, httponly=True, samesite="strict", path="/")
            return response
        if self.access.accepts_token(self._given(headers)):
            return None
        return _refuse(401, "this server needs its token", self.hint)

    def _given(self, headers: Headers) -> str | None:
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        if headers.get("x-api-key"):
            return headers["x-api-key"]
        if self.cookie and "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except Exception:  # noqa: BLE001 - a malformed cookie header is no token
                return None
            morsel = jar.get(self.cookie)
            return morsel.value if morsel else None
        return None
