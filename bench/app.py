"""The FastAPI app that the HTTP benchmark serves with uvicorn (``bench.app:app``).

Every route returns the same small JSON body; they differ only in how the caller is
authenticated:

* ``/open``       no authentication (the baseline),
* ``/protected``  ``Security(auth.principal, scopes=["items:read"])`` from authbridge,
* ``/noop``       the floor of any token dependency: a no-op ``Security()`` dependency with
  the same parameters as authbridge's (``HTTPConnection``, ``SecurityScopes``) that only
  reads the ``Authorization`` header,
* ``/tutorial``   the FastAPI tutorial approach: a sync ``def`` dependency on
  ``OAuth2PasswordBearer`` that calls PyJWT's ``jwt.decode`` (RS256, the issuer's public key
  fetched once at start-up).

Configured by environment variables set by ``bench/httpbench.py``:
``AUTHBRIDGE_BENCH_ISSUER``, ``AUTHBRIDGE_BENCH_AUDIENCE``, ``AUTHBRIDGE_BENCH_JWKS_URI``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Security, status
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from starlette.requests import HTTPConnection

from authbridge import AuthBridge, OIDCProvider, Principal

ISSUER = os.environ["AUTHBRIDGE_BENCH_ISSUER"]
AUDIENCE = os.environ["AUTHBRIDGE_BENCH_AUDIENCE"]
JWKS_URI = os.environ["AUTHBRIDGE_BENCH_JWKS_URI"]
SCOPE = "items:read"
BODY = {"status": "ok"}

auth = AuthBridge(providers=[OIDCProvider("bench", ISSUER, AUDIENCE)])
app = FastAPI(lifespan=auth.lifespan)


@app.get("/open")
async def open_route() -> dict[str, str]:
    return BODY


@app.get("/protected")
async def protected_route(
    user: Annotated[Principal, Security(auth.principal, scopes=[SCOPE])],
) -> dict[str, str]:
    return BODY


async def header_only(connection: HTTPConnection, security_scopes: SecurityScopes) -> str:
    return connection.headers.get("authorization", "")


@app.get("/noop")
async def noop_route(
    token: Annotated[str, Security(header_only, scopes=[SCOPE])],
) -> dict[str, str]:
    return BODY


# --- the FastAPI tutorial approach ("OAuth2 with Password, Bearer with JWT tokens") ---

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")
PUBLIC_KEY = jwt.PyJWKClient(JWKS_URI).get_signing_keys()[0].key


def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> dict[str, Any]:
    credentials_exception = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(
            token, PUBLIC_KEY, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
        )
    except jwt.InvalidTokenError:
        raise credentials_exception from None
    if payload.get("sub") is None:
        raise credentials_exception
    return payload


@app.get("/tutorial")
async def tutorial_route(
    user: Annotated[dict[str, Any], Depends(get_current_user)],
) -> dict[str, str]:
    return BODY
