"""The admin dashboard at /admin/ (server-rendered HTML; its charts read the admin API).

Without a valid session the page is a login form and nothing else. Signing in posts an admin token
(`worldgate admin token`), which is checked like a Bearer token and then kept in the `wg_admin`
cookie: HttpOnly (no script reads it), SameSite=Strict, Path=/admin, Secure over https, and no older
than the token. The page's scripts read the admin API with that cookie (same origin) and make the console's
changes through it (same-origin requests, each kept in the audit log): sharing, bans, fetches, reconcile,
findings, batch flushes.

Every response here forbids framing and inline script (the CSP allows only our own files: no CDN),
and the HTML is never cached. Static files are a fixed map of names to files, all package data (an
installed wheel or container has them): our own `static/*.{js,css}` and uPlot's built files,
vendored in `static/vendor/` with its LICENSE (the version package-lock.json pins for npm's `uplot`;
tests/test_artifact.py checks the copy against node_modules when that is installed).
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from app.edge.admin.auth import COOKIE, AdminAuth, AuthFailure, same_origin

log = logging.getLogger("worldgate.admin")

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
VENDOR_DIR = STATIC_DIR / "vendor"  # uPlot (MIT: LICENSE beside it; version in its banner), from npm's uplot/dist

COOKIE_PATH = "/admin"
LOGIN_BODY_BYTES_MAX = 16_384
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: Path
    media_type: str
    vendored: bool = False  # a third party's file, copied into static/vendor/


# name under /admin/static/ -> its file; nothing else is ever served from there (no path is built from the URL)
STATIC: dict[str, StaticFile] = {
    "dashboard.js": StaticFile(STATIC_DIR / "dashboard.js", JS),
    "dashboard.css": StaticFile(STATIC_DIR / "dashboard.css", CSS),
    "findings.js": StaticFile(STATIC_DIR / "findings.js", JS),
    "console.js": StaticFile(STATIC_DIR / "console.js", JS),  # the console's panels, and the helpers they share
    "sources.js": StaticFile(STATIC_DIR / "sources.js", JS),  # the source matrix and the scheduler
    "payments.js": StaticFile(STATIC_DIR / "payments.js", JS),  # the x402 payments panel
    "console.css": StaticFile(STATIC_DIR / "console.css", CSS),
    "history.js": StaticFile(STATIC_DIR / "history.js", JS),  # the Time Machine panel
    "live.js": StaticFile(STATIC_DIR / "live.js", JS),  # the Live feeds panel
    "vendor/uPlot.iife.min.js": StaticFile(VENDOR_DIR / "uPlot.iife.min.js", JS, vendored=True),
    "vendor/uPlot.min.css": StaticFile(VENDOR_DIR / "uPlot.min.css", CSS, vendored=True),
}

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}
PAGE_HEADERS = {**SECURITY_HEADERS, "cache-control": "no-store"}

LOGIN_FAILED = "That token was not accepted. Mint a new one with `worldgate admin token` and try again."
CROSS_SITE = "Sign-in and sign-out must come from this site's own pages."
NOT_CONFIGURED = (
    "The admin API is not configured on this server: set WORLDGATE_ADMIN_JWT_SECRET (or a public key) and restart."
)


def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def _login_page(status: int = 200, error: str | None = None) -> HTMLResponse:
    notice = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = _template("login.html").substitute(error=notice)
    return HTMLResponse(body, status, PAGE_HEADERS)


def _dashboard_page(subject: str, expires_at: int) -> HTMLResponse:
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires_at))
    body = _template("dashboard.html").substitute(subject=html.escape(subject), expires=html.escape(expires))
    return HTMLResponse(body, 200, PAGE_HEADERS)


def _see_other() -> RedirectResponse:
    return RedirectResponse("/admin/", 303, PAGE_HEADERS)


def _set_session(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )


async def _capped_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def routes(auth: AdminAuth) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        if not auth.enabled:
            return _login_page(error=NOT_CONFIGURED)
        token = request.cookies.get(COOKIE)
        if token:
            try:
                subject, expires_at = auth.check(token)
            except AuthFailure:
                response = _login_page()
                _clear_session(response, request)  # expired or from an old key: drop it
                return response
            return _dashboard_page(subject, expires_at)
        return _login_page()

    async def login(request: Request) -> Response:
        if request.method != "POST":
            return _see_other()  # the form lives at /admin/
        if not same_origin(request):
            return _login_page(403, CROSS_SITE)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = await _capped_body(request, LOGIN_BODY_BYTES_MAX)
        if raw is None or media != "application/x-www-form-urlencoded":
            return _login_page(400, "Sign in with the form on this page.")
        try:
            fields = parse_qs(raw.decode("ascii"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            return _login_page(400, "Sign in with the form on this page.")
        token = (fields.get("token") or [""])[0].strip()
        try:
            subject, expires_at = auth.check(token)
        except AuthFailure as exc:
            log.info("admin sign-in refused", extra={"reason": str(exc)})
            return _login_page(401, LOGIN_FAILED)  # generic: says nothing of why, never echoes the token
        max_age = expires_at - int(time.time())
        if max_age <= 0:  # inside the verifier's leeway, but nothing left to keep
            return _login_page(401, LOGIN_FAILED)
        log.info("admin signed in", extra={"admin": subject})
        response = _see_other()
        _set_session(response, request, token, max_age)
        return response

    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return _login_page(403, CROSS_SITE)
        response = _see_other()
        _clear_session(response, request)
        return response

    async def static(request: Request) -> Response:
        entry = STATIC.get(request.path_params["name"])
        if entry is None:
            return PlainTextResponse("not found\n", 404, SECURITY_HEADERS)
        if not entry.path.is_file():
            if entry.vendored:
                message = (
                    f"static/vendor/{entry.path.name} is missing from this worldgate install: the dashboard's "
                    "charts need it. Reinstall worldgate (in a checkout, `make install`).\n"
                )
                return PlainTextResponse(message, 503, {**SECURITY_HEADERS, "cache-control": "no-store"})
            return PlainTextResponse("not found\n", 404, SECURITY_HEADERS)
        headers = {**SECURITY_HEADERS, "cache-control": "no-cache"}
        return FileResponse(entry.path, media_type=entry.media_type, headers=headers)

    return [
        Route("/admin/", page, methods=["GET", "HEAD"]),
        Route("/admin/login", login, methods=["GET", "POST"]),
        Route("/admin/logout", logout, methods=["POST"]),
        Route("/admin/static/{name:path}", static, methods=["GET", "HEAD"]),
    ]
