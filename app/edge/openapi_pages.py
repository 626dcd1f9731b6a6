"""The HTML pages in /openapi.json: the landing page at / and the admin dashboard under /admin/ (its sign-in, sign-out
and static files). app/edge/openapi.py assembles the document; the dashboard's data is the admin API
(app/edge/openapi_ops.py)."""

from __future__ import annotations

from typing import Any

from app.edge.openapi_ops import ALWAYS

_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
_PAGE = {_HTML: {"schema": {"type": "string"}}}
_SEE_OTHER = {"description": "To the dashboard (/admin/).", "headers": {"Location": {"schema": {"type": "string"}}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PAGE}


def _get(operation_id: str, summary: str, description: str, responses: dict[str, Any], tag: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": [tag],
        "responses": {**responses, **ALWAYS},
    }


def page_paths() -> dict[str, Any]:
    """/ and the dashboard's routes (app/edge/routes.py `landing`, app/edge/admin/dashboard.py)."""
    cookie = {
        "Set-Cookie": {
            "description": "`wg_admin`: the session (HttpOnly, SameSite=Strict, Path=/admin).",
            "schema": {"type": "string"},
        }
    }
    cross_site = _html("A form posted from another site: refused.")
    return {
        "/": {
            "get": _get(
                "landing",
                "What is here",
                "Links to /llms.txt, /openapi.json, /v1/streams, /.well-known/x402, /mcp and /v1/health: JSON with "
                "`Accept: application/json`, else a small HTML page.",
                {
                    "200": {
                        "description": "The links.",
                        "content": {
                            _JSON: {"schema": {"$ref": "#/components/schemas/Document"}},
                            **_PAGE,
                        },
                    }
                },
                "free",
            )
        },
        "/admin/": {
            "get": _get(
                "dashboard",
                "The admin dashboard",
                "Server-rendered HTML, never cached: the dashboard with a valid `wg_admin` session, else the sign-in "
                "form (and nothing else). Its panels read the admin API.",
                {"200": _html("The dashboard, or the sign-in form.")},
                "dashboard",
            )
        },
        "/admin/login": {
            "get": _get(
                "dashboardSignInForm",
                "Sign in (the form is at /admin/)",
                "A GET is sent to the form.",
                {"303": _SEE_OTHER},
                "dashboard",
            ),
            "post": _get(
                "dashboardSignIn",
                "Sign in",
                "Posts an admin token (`worldgate admin token`, form field `token`, "
                "application/x-www-form-urlencoded, from this site), checked like a Bearer token, then kept in the "
                "`wg_admin` cookie no longer than the token lives.",
                {
                    "303": {**_SEE_OTHER, "headers": {**_SEE_OTHER["headers"], **cookie}},
                    "400": _html("Not the sign-in form's body."),
                    "401": _html("The token was refused (the page does not say why)."),
                    "403": cross_site,
                },
                "dashboard",
            ),
        },
        "/admin/logout": {
            "get": {
                "summary": "Not answered: sign-out is a POST",
                "tags": ["dashboard"],
                "responses": {"405": ALWAYS["405"]},
            },
            "post": _get(
                "dashboardSignOut",
                "Sign out",
                "Clears the `wg_admin` cookie (a form posted from this site).",
                {"303": {**_SEE_OTHER, "headers": {**_SEE_OTHER["headers"], **cookie}}, "403": cross_site},
                "dashboard",
            ),
        },
        "/admin/static/{name}": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "One of the dashboard's own files (a fixed list), e.g. dashboard.js.",
                    "schema": {"type": "string"},
                }
            ],
            "get": _get(
                "dashboardStatic",
                "The dashboard's scripts and styles",
                "Its own JavaScript and CSS, and the vendored uPlot build (no CDN).",
                {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "text/javascript; charset=utf-8": {"schema": {"type": "string"}},
                            "text/css; charset=utf-8": {"schema": {"type": "string"}},
                        },
                    },
                    "404": {"description": "No such file."},
                    "503": {"description": "A vendored file is missing from this install."},
                },
                "dashboard",
            ),
        },
    }
