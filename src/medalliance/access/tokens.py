"""Short-lived JWT access tokens (PyJWT, HS256) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from medalliance.kernel.errors import NotAuthenticated
from medalliance.kernel.roles import Role

ALGORITHM = "HS256"
ISSUER = "medalliance"
AUDIENCE = "medalliance-api"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    username: str
    role: Role
    institution_id: uuid.UUID | None
    practitioner_id: uuid.UUID | None
    expires_at: datetime


def encode_access_token(
    claims: AccessClaims, *, secret: str, issued_at: datetime, ttl: timedelta
) -> str:
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(claims.user_id),
        "name": claims.username,
        "role": str(claims.role),
        "inst": None if claims.institution_id is None else str(claims.institution_id),
        "prac": None if claims.practitioner_id is None else str(claims.practitioner_id),
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + ttl).timestamp()),
        "jti": secrets.token_hex(8),
        "typ": "access",
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret: str) -> AccessClaims:
    try:
        data = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iat"]},
        )
        if data.get("typ") != "access":
            raise NotAuthenticated("Not an access token.")
        return AccessClaims(
            user_id=uuid.UUID(data["sub"]),
            username=str(data["name"]),
            role=Role(data["role"]),
            institution_id=uuid.UUID(data["inst"]) if data.get("inst") else None,
            practitioner_id=uuid.UUID(data["prac"]) if data.get("prac") else None,
            expires_at=datetime.fromtimestamp(data["exp"], UTC),
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated("The access token has expired; refresh it.") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
        raise NotAuthenticated("The access token is invalid.") from exc


def new_refresh_token() -> tuple[str, str]:
    """Return (token to hand out, hash to store)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
