"""``authbridge decode`` and ``authbridge verify``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import typer

from ..errors import AuthBridgeError, ConfigurationError, ProviderUnavailable
from ..jose import parse_compact
from ..jose._jwt import TokenType, numeric_date
from ..metadata import describe_unavailable
from ..providers import OIDCProvider
from ..resource import Principal, ResourceServer
from ._app import (
    MAX_INPUT_CHARS,
    REFUSED,
    UNAVAILABLE,
    command,
    fail,
    library_logs,
    read_token,
    to_json,
)

BANNER = (
    "UNVERIFIED: decoded only. The signature, issuer, audience and expiry were NOT checked; "
    "use `authbridge verify` for that."
)
_TIME_CLAIMS = ("exp", "nbf", "iat", "auth_time")

TokenArgument = Annotated[
    str,
    typer.Argument(
        metavar="TOKEN",
        help="The token, or - to read it from standard input (keeps it out of shell history).",
        show_default=False,
    ),
]


# -- decoding without trust -------------------------------------------------------------


def _lenient_segment(segment: str) -> dict[str, Any] | None:
    """A JSON object from a base64url segment, tolerating padding and odd spellings."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def duration(seconds: float) -> str:
    """``seconds`` as its two largest units: ``"2d 3h"``, ``"4m 10s"``, ``"12s"``."""
    left = round(abs(seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        count, left = divmod(left, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count}{name}")
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def describe_time(name: str, value: Any, now: float) -> str:
    """A NumericDate claim as an ISO date (UTC) with how far it is from ``now``."""
    seconds = numeric_date(value)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
    if seconds is None:
        return f"{shown}: not a valid NumericDate (authbridge refuses the token)"
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return f"{shown}: out of the range of dates"
    iso = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    delta = seconds - now
    span = duration(delta)
    if name == "exp":
        when = f"expires in {span}" if delta > 0 else f"expired {span} ago"
    elif name == "nbf":
        when = f"not valid for another {span}" if delta > 0 else f"valid since {span} ago"
    elif name == "iat":
        when = f"issued {span} ago" if delta <= 0 else f"issued in the future, {span} from now"
    else:
        when = f"{span} ago" if delta <= 0 else f"{span} from now"
    return f"{iso} ({when})"


def _decoded(header: Any, claims: Any, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {"verified": False, "warning": BANNER, "header": header}
    if claims is not None:
        out["claims"] = claims
        times = {
            name: describe_time(name, claims[name], now) for name in _TIME_CLAIMS if name in claims
        }
        if times:
            out["times"] = times
    return out


@command("decode", "Show a token's header and claims, UNVERIFIED.")
def decode(token: TokenArgument) -> None:
    """Show a JWT's header and claims WITHOUT verifying anything.

    Nothing is checked and no network request is made: use it to see what a
    token says (iss, aud, typ, kid, scopes, expiry), then `authbridge verify`
    to see whether it is valid. Exit code 1 if the token cannot be decoded or
    would be refused before any check (malformed).
    """
    raw = read_token(token)
    typer.echo(BANNER, err=True)
    now = time.time()
    parts = raw.split(".")
    if len(parts) == 1:
        fail(
            "error: not a JWT (no '.' in it): an opaque token; only its issuer can tell what "
            "it is (introspection)",
            REFUSED,
        )
    if len(parts) == 5:
        header = _lenient_segment(parts[0])
        if header is not None:
            typer.echo(to_json({"verified": False, "warning": BANNER, "header": header}))
        fail(
            "error: an encrypted token (JWE, 5 segments): authbridge accepts signed JWTs "
            "(JWS, 3 segments) only",
            REFUSED,
        )
    if len(parts) != 3:
        fail(f"error: not a JWT: {len(parts)} segments, a signed JWT has 3", REFUSED)
    try:
        parsed = parse_compact(raw, max_bytes=MAX_INPUT_CHARS)
    except AuthBridgeError as exc:
        header, claims = _lenient_segment(parts[0]), _lenient_segment(parts[1])
        if header is not None or claims is not None:
            typer.echo(to_json(_decoded(header, claims, now)))
        fail(
            f"error: malformed token ({exc.reason}): authbridge refuses it before any other check",
            REFUSED,
        )
    out = _decoded(dict(parsed.header), parsed.claims, now)
    out["signature_bytes"] = len(parsed.signature)
    typer.echo(to_json(out))


# -- verifying as an app would -----------------------------------------------------------

_HINTS = {
    "expired": "the token's exp has passed (beyond the leeway): get a new token",
    "not_yet_valid": "the token's nbf is in the future: check both clocks",
    "issued_in_the_future": "the token's iat is in the future: check both clocks",
    "audience_mismatch": (
        "its aud contains none of the --audience values: give the identifier the token was "
        "issued for (see `authbridge decode`), or get a token for this API"
    ),
    "unknown_issuer": (
        "its iss is not the --issuer given; issuers are compared exactly, trailing slash included"
    ),
    "issuer_mismatch": "its iss is not the --issuer given (compared exactly)",
    "wrong_token_type": (
        "--token-type strict needs the header typ at+jwt (RFC 9068); lenient also accepts JWT "
        "or no typ; id_token is for OpenID Connect ID tokens. ID and refresh tokens are never "
        "access tokens"
    ),
    "algorithm_not_allowed": (
        "its alg is not accepted: RS*, PS*, ES* and EdDSA by default; HS* only with a shared "
        "secret, none never"
    ),
    "unknown_key": (
        "no key published by the issuer has the token's kid: signed by another issuer or key"
    ),
    "bad_signature": (
        "the signature does not verify with the issuer's key: altered, or signed by another key"
    ),
    "client_mismatch": "its client (client_id or azp) is not one of the --client-id values",
    "missing_claim": "a required claim is absent",
    "unknown_token_format": (
        "not a JWT: opaque tokens are checked by introspection, which this command does not do"
    ),
    "jwe_not_accepted": "an encrypted token (JWE): only signed JWTs (JWS) are accepted",
}


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}, {}
    return _lenient_segment(parts[0]) or {}, _lenient_segment(parts[1]) or {}


def _short(value: Any) -> str:
    text = to_json(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _hint(exc: AuthBridgeError, token: str, token_type: str) -> str | None:
    if isinstance(exc, ProviderUnavailable):
        explanation, _ = describe_unavailable(exc)
        return f"{explanation}; nothing was decided (`authbridge check ISSUER` tells more)"
    hint = _HINTS.get(exc.reason) or (
        "not a well-formed signed JWT" if exc.reason.startswith("malformed") else None
    )
    header, claims = _unverified(token)
    if exc.reason in ("unknown_issuer", "issuer_mismatch") and "iss" in claims:
        hint = f"{hint}; the token says iss={_short(claims['iss'])}"
    elif exc.reason == "audience_mismatch" and "aud" in claims:
        hint = f"{hint}; the token says aud={_short(claims['aud'])}"
    elif exc.reason == "wrong_token_type" and exc.claim is None:
        hint = f"{hint}; the token's typ is {_short(header.get('typ'))}, --token-type {token_type}"
    elif exc.reason == "missing_claim" and exc.claim:
        hint = f"the {exc.claim} claim is required and absent"
    return hint


def _principal_json(principal: Principal) -> dict[str, Any]:
    data = principal.model_dump(mode="json")
    for name in ("scopes", "roles"):
        data[name] = sorted(data[name])
    return data


async def _verify(server: ResourceServer, token: str) -> Principal:
    # No warm-up: the first verification fetches metadata and keys itself, so a
    # failure is reported with its own reason (not as a cooldown after it).
    await server.start(warm_up=False)
    try:
        return await server.verify(token)
    finally:
        await server.aclose()


@command("verify", "Verify a token as an app would.")
def verify(
    token: TokenArgument,
    *,
    issuer: Annotated[
        str,
        typer.Option(
            metavar="ISSUER",
            help="The issuer to trust, exactly as its tokens' iss.",
            show_default=False,
        ),
    ],
    audience: Annotated[
        list[str] | None,
        typer.Option(
            metavar="AUDIENCE", help="An accepted aud (your API's identifier); repeatable."
        ),
    ] = None,
    client_id: Annotated[
        list[str] | None,
        typer.Option(
            "--client-id",
            metavar="CLIENT_ID",
            help="An accepted client (client_id or azp), for tokens without aud; repeatable.",
        ),
    ] = None,
    token_type: Annotated[
        str,
        typer.Option(
            "--token-type",
            metavar="strict|lenient|id_token",
            help="strict: RFC 9068 typ at+jwt only; lenient: also JWT or no typ; "
            "id_token: OpenID Connect ID tokens.",
        ),
    ] = "lenient",
    discovery_url: Annotated[
        str | None,
        typer.Option(
            "--discovery-url", metavar="URL", help="Fetch the metadata from here instead."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Bound on each request.", min=0.1)
    ] = 5.0,
) -> None:
    """Verify a token exactly as an app configured with these options would.

    Fetches the issuer's metadata and keys, checks the signature and claims,
    and prints the Principal as JSON (exit code 0), or the refusal: code,
    reason, claim and the expected-versus-actual detail (exit code 1). Exit
    code 2 when the issuer cannot be reached or the options are invalid.
    """
    raw = read_token(token)
    try:
        provider = OIDCProvider(
            "cli",
            issuer=issuer,
            audience=audience or None,
            client_ids=client_id or None,
            token_type=cast(TokenType, token_type),  # the provider checks the value
            discovery_url=discovery_url,
        )
        server = ResourceServer([provider], http_timeout=timeout)
    except ConfigurationError as exc:
        fail(f"error: {exc}", UNAVAILABLE)
    try:
        with library_logs():
            principal = asyncio.run(_verify(server, raw))
    except AuthBridgeError as exc:
        refusal: dict[str, Any] = {
            "verified": False,
            "code": exc.code,
            "reason": exc.reason,
            "claim": exc.claim,
            "provider": exc.provider,
            "detail": exc.detail,
        }
        if isinstance(exc, ProviderUnavailable):
            refusal["retry_after"] = exc.retry_after
        typer.echo(to_json(refusal))
        where = f" (claim {exc.claim})" if exc.claim else ""
        hint = _hint(exc, raw, token_type)
        message = f"{'unavailable' if isinstance(exc, ProviderUnavailable) else 'refused'}: "
        message += f"{exc.code}: {exc.reason}{where}"
        fail(message + (f"\n  {hint}" if hint else ""), _exit_code(exc))
    typer.echo(to_json(_principal_json(principal)))
    typer.echo(f"valid: accepted by OIDCProvider(issuer={issuer!r}) with these options", err=True)


def _exit_code(exc: AuthBridgeError) -> int:
    return UNAVAILABLE if isinstance(exc, ProviderUnavailable) else REFUSED
