"""Admin authentication: bearer JWTs with one pinned algorithm, a required `exp`, a checked `aud`.

The algorithm comes from the settings, never from the token's header, so `alg: none` or an HS256
token forged with an RS256 public key as its secret fails like any bad signature. The dashboard
keeps the same token in an HttpOnly, SameSite=Strict cookie; a state-changing request that rides
on the cookie must also come from our own origin (CSRF).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from starlette.requests import Request

from app.runtime.settings import AdminSettings

ISSUER = "worldgate"
COOKIE = "wg_admin"
SECRET_FILE = "admin-jwt.secret"  # noqa: S105 - the name of the file, not a secret
LEEWAY_S = 5  # clock skew between the minting machine and this one
TTL_S_MAX = 30 * 86400


@dataclass(frozen=True, slots=True)
class Admin:
    subject: str
    expires_at: int
    via_cookie: bool


class AuthFailure(Exception):
    """Why a request is not an admin's: the message is safe to show (it never echoes the token)."""


class AdminAuth:
    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        self._key: Any = settings.secret if settings.algorithm == "HS256" else settings.public_key

    @property
    def enabled(self) -> bool:
        return self.settings.configured

    def check(self, token: str) -> tuple[str, int]:
        """The token's subject and expiry, or AuthFailure."""
        if not self.enabled:
            raise AuthFailure("the admin API is not configured (set WORLDGATE_ADMIN_JWT_SECRET or a public key)")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.settings.algorithm],  # pinned: the header's `alg` is not trusted
                audience=self.settings.audience,
                options={"require": ["exp", "aud", "sub"]},
                leeway=LEEWAY_S,
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure("the token is for another audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailure(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise AuthFailure("the token is not valid") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthFailure("the token names no subject")
        return subject, int(claims["exp"])

    def authenticate(self, request: Request) -> Admin:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthFailure("use Authorization: Bearer <token>")
            subject, expires = self.check(token.strip())
            return Admin(subject, expires, via_cookie=False)
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise AuthFailure("no token: send Authorization: Bearer <token> (mint one with `worldgate admin token`)")
        subject, expires = self.check(cookie)
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            raise AuthFailure("a change made with the session cookie must come from this site")
        return Admin(subject, expires, via_cookie=True)


def same_origin(request: Request) -> bool:
    """The browser says where the request came from; with a cookie, it must be us."""
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "")
    return bool(host) and (
        origin == f"{request.url.scheme}://{host}" or origin.startswith(f"{request.url.scheme}://{host}/")
    )


def mint(secret: str, audience: str, subject: str, ttl_s: int, *, algorithm: str = "HS256") -> str:
    """A token for `subject`, valid `ttl_s` seconds. `secret` is the HS256 secret or an RS/ES private key (PEM)."""
    if not 0 < ttl_s <= TTL_S_MAX:
        raise ValueError(f"the token's lifetime must be between 1 s and {TTL_S_MAX // 86400} days")
    now = int(time.time())
    claims = {"sub": subject, "aud": audience, "iss": ISSUER, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=algorithm)


def ensure_secret(state_dir: Path) -> Path:
    """The embedded default's admin secret: made once, readable by this user only."""
    path = state_dir / SECRET_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path
