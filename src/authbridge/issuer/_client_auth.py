"""Client authentication at the token, revocation and introspection endpoints.

One request carries at most one method (RFC 6749 §2.3):

- ``client_secret_basic``: ``Authorization: Basic`` over the form-urlencoded
  client id and secret (RFC 6749 §2.3.1), decoded strictly;
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the form;
- ``private_key_jwt``: a JWS client assertion (RFC 7523 §2.2, §3) signed by a
  key of the client's registered JWKS, short-lived, its ``jti`` used once;
- a public client (``none``) only names itself with ``client_id`` (or with
  ``Basic`` and an empty secret, as Swagger UI does).

The two secret methods are interchangeable for a client registered with
either: the secret is the same credential and travels in the request body or
header of the same TLS request. ``private_key_jwt`` and public clients use
exactly their registered method.

Every failure that could tell an unknown client from a known one (unknown,
disabled, wrong secret, wrong method) is the same ``invalid_client`` answer,
and a presented secret is always compared with a hash (a dummy one for an
unknown client) in constant time. Values too long or outside the RFC 6749
character set are refused before any lookup. No credential reaches a log line
or an error.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from ..errors import InvalidToken, StoreUnavailable
from ..jose import (
    JWTPolicy,
    KeySet,
    ParsedJWT,
    check_claims,
    check_header,
    import_jwks,
    parse_compact,
)
from ..jose.keys import ASYMMETRIC_ALGS
from ..store import ClientRecord
from ._errors import OAuthError
from ._runtime import store_unavailable
from ._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret, same_secret

if TYPE_CHECKING:
    from ._runtime import IssuerRuntime, TokenRequest

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""RFC 7523 §2.2 ``client_assertion_type`` of a JWT client assertion."""

MAX_AUTHORIZATION_CHARS = 1024
"""Longest ``Authorization: Basic`` header value decoded."""

MAX_CLIENT_ID_CHARS = 255
"""Longest client id looked up."""

MAX_SECRET_CHARS = 512
"""Longest client secret compared (generated ones have 54 characters)."""

MAX_ASSERTION_BYTES = 8 * 1024
"""Longest client assertion parsed."""

MAX_ASSERTION_LIFETIME = 300.0
"""A client assertion may expire at most this many seconds ahead (plus the leeway)."""

ASSERTION_LEEWAY = 30.0
"""Clock skew tolerated on a client assertion's ``exp``, ``nbf`` and ``iat``."""

MAX_JTI_CHARS = 256
"""Longest client assertion ``jti`` recorded."""

SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
"""Registered methods a client secret (in Basic or in the form) authenticates."""

_FAILED = "Client authentication failed"
# Compared against when the client is unknown or has no secret: the same work either way.
_DUMMY_HASH = hash_secret(new_secret(CLIENT_SECRET_PREFIX), "client_secret")
# RFC 6749 Appendix A.1, A.2: client-id and client-secret are *VSCHAR.
_VSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F))
# client_assertion header types: none, the generic one, or the dedicated one of
# draft-ietf-oauth-rfc7523bis; an access token (at+jwt) is never an assertion.
_ASSERTION_TYP = frozenset({"jwt", "application/jwt", "client-authentication+jwt"})
_MAX_KEYSETS = 256


def _refused(reason: str, *, basic: bool) -> OAuthError:
    return OAuthError("invalid_client", _FAILED, reason=reason, status=401, basic_challenge=basic)


def _bad_request(description: str, reason: str) -> OAuthError:
    return OAuthError("invalid_request", description, reason=reason)


def _vschar(value: str, limit: int) -> bool:
    return len(value) <= limit and set(value) <= _VSCHAR


async def authenticate(runtime: IssuerRuntime, request: TokenRequest) -> ClientRecord:
    """The client a token, revocation or introspection request comes from.

    Args:
        runtime: The issuer.
        request: The request: its form and ``Authorization`` header.

    Returns:
        The authenticated (or, for a public client, identified) client.

    Raises:
        OAuthError: ``invalid_request`` (400) for several methods at once, a
            ``client_id`` that contradicts the credentials, or half of a client
            assertion; ``invalid_client`` (401, with a Basic challenge when
            Basic was used) for every failed authentication;
            ``temporarily_unavailable`` (503) while the store is down.
    """
    form = request.form
    header = request.authorization
    form_secret = form.get("client_secret") or None  # an empty secret is no secret
    assertion = "client_assertion" in form or "client_assertion_type" in form
    if (header is not None) + (form_secret is not None) + assertion > 1:
        raise _bad_request(
            "Use exactly one client authentication method", "multiple_client_auth_methods"
        )
    if assertion:
        return await _by_assertion(runtime, form)
    if header is not None:
        basic_id, secret = _parse_basic(header)
        named = form.get("client_id")
        if named is not None and named != basic_id:
            raise _bad_request(
                "client_id does not match the client authentication", "client_id_mismatch"
            )
        return await _by_secret(runtime, basic_id, secret or None, basic=True)
    form_id = form.get("client_id")
    if not form_id:
        if form_secret is not None:
            raise _bad_request("client_id is required with client_secret", "no_client_id")
        raise _refused("no_client_authentication", basic=False)
    return await _by_secret(runtime, form_id, form_secret, basic=False)


def _parse_basic(header: str) -> tuple[str, str]:
    """The client id and secret of an ``Authorization: Basic`` value (RFC 6749 §2.3.1).

    Both parts are form-urlencoded before base64 (RFC 6749 Appendix B), so a
    ``:`` in either arrives as ``%3A`` and the first raw ``:`` separates them
    (RFC 7617 §2: a user-id never contains one).
    """
    if len(header) > MAX_AUTHORIZATION_CHARS:
        raise _refused("oversized_basic_credentials", basic=True)
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        raise _refused("unsupported_authorization_scheme", basic=True)
    token = credentials.strip(" ").encode("ascii", "replace")
    try:
        decoded = binascii.a2b_base64(token, strict_mode=True)
    except binascii.Error:
        raise _refused("malformed_basic_credentials", basic=True) from None
    # One spelling per value: no extra padding, no unused bits set.
    if not token or binascii.b2a_base64(decoded, newline=False) != token:
        raise _refused("malformed_basic_credentials", basic=True)
    try:
        text = decoded.decode("utf-8")
        quoted_id, colon, quoted_secret = text.partition(":")
        client_id = unquote_plus(quoted_id, errors="strict")
        secret = unquote_plus(quoted_secret, errors="strict")
    except UnicodeDecodeError:
        raise _refused("malformed_basic_credentials", basic=True) from None
    if not colon or not client_id:
        raise _refused("malformed_basic_credentials", basic=True)
    return client_id, secret


async def _lookup(runtime: IssuerRuntime, client_id: str) -> ClientRecord | None:
    try:
        return await runtime.client(client_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None


async def _by_secret(
    runtime: IssuerRuntime, client_id: str, secret: str | None, *, basic: bool
) -> ClientRecord:
    """A client by id, with its secret (confidential) or without one (public)."""
    if not _vschar(client_id, MAX_CLIENT_ID_CHARS):
        raise _refused("invalid_client_id", basic=basic)
    if secret is not None and not _vschar(secret, MAX_SECRET_CHARS):
        raise _refused("invalid_client_secret", basic=basic)
    client = await _lookup(runtime, client_id)
    if secret is None:
        if client is None:
            raise _refused("unknown_client", basic=basic)
        if client.disabled:
            raise _refused("client_disabled", basic=basic)
        if not client.public:
            raise _refused("client_authentication_required", basic=basic)
        return client
    stored = client.secret_hash if client is not None and client.secret_hash else None
    matches = same_secret(secret, "client_secret", stored or _DUMMY_HASH)
    if client is None:
        raise _refused("unknown_client", basic=basic)
    if client.disabled:
        raise _refused("client_disabled", basic=basic)
    if client.public:
        raise _refused("public_client_with_secret", basic=basic)
    if client.auth_method not in SECRET_METHODS or stored is None:
        raise _refused("auth_method_not_registered", basic=basic)
    if not matches:
        raise _refused("wrong_client_secret", basic=basic)
    return client


# --- private_key_jwt ----------------------------------------------------------------------


async def _by_assertion(runtime: IssuerRuntime, form: Mapping[str, str]) -> ClientRecord:
    """A client by its RFC 7523 JWT assertion (``private_key_jwt``)."""
    assertion_type = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    if not assertion_type or not assertion:
        raise _bad_request(
            "client_assertion and client_assertion_type go together", "incomplete_client_assertion"
        )
    if assertion_type != ASSERTION_TYPE:
        raise _refused("unsupported_client_assertion_type", basic=False)
    try:
        parsed = parse_compact(assertion, max_bytes=MAX_ASSERTION_BYTES)
    except InvalidToken:
        raise _refused("malformed_client_assertion", basic=False) from None
    subject = parsed.claims.get("sub")
    named = form.get("client_id")
    client_id = subject if named is None else named
    if not isinstance(client_id, str) or not client_id:
        raise _refused("client_assertion_without_sub", basic=False)
    if not _vschar(client_id, MAX_CLIENT_ID_CHARS):
        raise _refused("invalid_client_id", basic=False)
    if subject != client_id:
        raise _refused("client_assertion_sub_mismatch", basic=False)
    client = await _lookup(runtime, client_id)
    if client is None:
        raise _refused("unknown_client", basic=False)
    if client.disabled:
        raise _refused("client_disabled", basic=False)
    if client.auth_method != "private_key_jwt" or not client.jwks:
        raise _refused("auth_method_not_registered", basic=False)
    now = runtime.clock()
    exp, jti = _verified_claims(runtime, client_id, client.jwks, parsed, now)
    # After the signature: nobody else can use up a client's jti values.
    try:
        first = await runtime.store.replay.first_use(
            assertion_replay_key(client_id, jti), expires_at=exp + ASSERTION_LEEWAY, now=now
        )
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
    if not first:
        raise _refused("client_assertion_replayed", basic=False)
    return client


def _verified_claims(
    runtime: IssuerRuntime,
    client_id: str,
    jwks: Mapping[str, Any],
    parsed: ParsedJWT,
    now: float,
) -> tuple[float, str]:
    """Check the assertion's signature and claims; return its ``exp`` and ``jti``."""
    keys = _keyset(client_id, jwks)
    config = runtime.config
    policy = JWTPolicy(
        issuer=client_id,
        audiences=frozenset({config.endpoint("token"), config.issuer}),
        algorithms=ASYMMETRIC_ALGS,
        leeway=ASSERTION_LEEWAY,
        required_claims=frozenset({"iss", "sub", "aud", "exp", "jti"}),
        max_token_bytes=MAX_ASSERTION_BYTES,
    )
    header = parsed.header
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ASSERTION_TYP):
        raise _refused("client_assertion_wrong_typ", basic=False)
    try:
        # typ is checked above (check_header's kinds are access and ID tokens).
        alg, kid = check_header({k: v for k, v in header.items() if k != "typ"}, policy)
        if not any(
            key.verify(alg, parsed.signing_input, parsed.signature)
            for key in keys.candidates(kid, alg)
        ):
            raise InvalidToken("bad_signature")
        check_claims(parsed.claims, policy, now)
    except InvalidToken as exc:
        raise _refused(f"client_assertion_{exc.reason}", basic=False) from None
    claims = parsed.claims
    exp = float(claims["exp"])  # a NumericDate: check_claims checked it
    if exp > now + MAX_ASSERTION_LIFETIME + ASSERTION_LEEWAY:
        raise _refused("client_assertion_lifetime_too_long", basic=False)
    jti = claims["jti"]
    if not jti or len(jti) > MAX_JTI_CHARS or not _storable(jti):
        raise _refused("client_assertion_invalid_jti", basic=False)
    return exp, jti


# client id -> (canonical JSON of its JWKS, the imported keys). Keyed by content, not by
# the mapping's identity: the store returns a new mapping on every lookup.
_KEYSETS: dict[str, tuple[str, KeySet]] = {}


def _keyset(client_id: str, jwks: Mapping[str, Any]) -> KeySet:
    """The client's registered keys, imported once per JWKS content (bounded)."""
    try:
        fingerprint = json.dumps(jwks, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        raise _refused("client_jwks_unusable", basic=False) from None
    entry = _KEYSETS.get(client_id)
    if entry is not None and entry[0] == fingerprint:
        return entry[1]
    try:
        keys = import_jwks(jwks, source=f"client {client_id[:64]!r}")
    except ValueError:
        raise _refused("client_jwks_unusable", basic=False) from None
    _KEYSETS.pop(client_id, None)
    while len(_KEYSETS) >= _MAX_KEYSETS:
        del _KEYSETS[next(iter(_KEYSETS))]
    _KEYSETS[client_id] = (fingerprint, keys)
    return keys


def _storable(text: str) -> bool:
    """No control character (PostgreSQL's text refuses NUL; none belongs in an id)."""
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def assertion_replay_key(client_id: str, jti: str) -> str:
    """The replay-store key of a client assertion: ``jti:`` + a SHA-256 over (client, jti).

    Fixed length (68 characters) whatever the two values hold, so that no
    backend's key limit can turn a long ``jti`` into an error.
    """
    data = f"{client_id}\0{jti}".encode("utf-8", "surrogatepass")
    return "jti:" + hashlib.sha256(data).hexdigest()
