"""``authbridge check ISSUER``: can authbridge verify this issuer's tokens, and how to configure it.

Everything goes through the library's own code (metadata discovery, the bounded
fetch, the JWKS import), so the report says what an app would do.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from joserfc.errors import SecurityWarning

from .._clock import system_clock
from .._http import DEFAULT_MAX_BYTES, HttpClientHolder, fetch_json
from ..errors import ConfigurationError, ProviderUnavailable
from ..jose import import_jwks
from ..jose.keys import UnusableKey, key_from_jwk
from ..metadata import (
    MetadataCache,
    ProviderMetadata,
    check_issuer_url,
    describe_unavailable,
    discovery_urls,
)
from ..providers import OIDCProvider
from ..resource.provider import DEFAULT_ALGORITHMS
from ._app import OK, REFUSED, UNAVAILABLE, command, fail, library_logs, to_json

LABEL = "check"

_SKIP_REASONS = {
    "rsa_key_too_small": "RSA keys under 2048 bits are refused",
    "symmetric_key_in_jwks": "a shared secret has no place in a public key set",
    "not_a_signing_key": "its use is not sig (an encryption key)",
    "key_ops_exclude_verify": "its key_ops do not include verify",
    "unsupported_key_type": "only RSA, EC and OKP keys verify signatures",
    "unsupported_curve": "only P-256, P-384, P-521, Ed25519 and Ed448 are supported",
    "alg_does_not_match_key": "its alg does not fit its key type",
    "kid_not_a_string": "its kid is not a string",
}


@dataclass
class _Fetch:
    # httpx or httpx2 objects, whichever library the outbound client uses.
    request: Any
    started: float
    response: Any = None


@dataclass
class _Recorder:
    """Every request made through the check's client, with its answer and timing."""

    fetches: list[_Fetch] = field(default_factory=list)

    async def on_request(self, request: Any) -> None:
        self.fetches.append(_Fetch(request, time.perf_counter()))

    async def on_response(self, response: Any) -> None:
        for fetch in reversed(self.fetches):
            if fetch.request is response.request:
                fetch.response = response
                return

    def lines(self, since: int) -> list[str]:
        out = []
        for fetch in self.fetches[since:]:
            line = f"  GET {fetch.request.url}"
            response = fetch.response
            if response is None:
                out.append(f"{line} -> no answer")
                continue
            try:
                ms = response.elapsed.total_seconds() * 1000
            except RuntimeError:  # not read to the end (refused by a size check)
                ms = (time.perf_counter() - fetch.started) * 1000
            size = response.num_bytes_downloaded
            out.append(f"{line} -> {response.status_code} in {ms:.0f} ms, {size} bytes")
        return out

    def answered(self, since: int) -> str | None:
        """The URL of the last request after ``since`` that was answered 200."""
        for fetch in reversed(self.fetches[since:]):
            if fetch.response is not None and fetch.response.status_code == 200:
                return str(fetch.request.url)
        return None


class _Report:
    def __init__(self) -> None:
        self.code = OK
        self.problems: list[str] = []

    def say(self, text: str = "") -> None:
        typer.echo(text)

    def problem(self, code: int, text: str) -> None:
        self.say(f"  [fail] {text}")
        self.problems.append(text)
        self.code = max(self.code, code)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _failure_code(reason: str) -> int:
    """Could not decide (2) for network trouble and server errors, otherwise not usable (1)."""
    if reason.startswith(("timeout", "transport_error", "http_status:5")):
        return UNAVAILABLE
    return REFUSED


def _jwks_problem(reason: str, timeout: float) -> str:
    what = "JWKS"
    if reason == "timeout":
        return f"{what}: no complete answer within {timeout:g} s"
    if reason.startswith("transport_error:"):
        return f"{what}: cannot connect ({reason.split(':', 1)[1]})"
    if reason.startswith("http_status:"):
        return f"{what}: HTTP status {reason.split(':', 1)[1]}"
    if reason in ("invalid_json", "json_not_an_object"):
        return f"{what}: the answer is not a JSON object"
    if reason == "response_too_large":
        return f"{what}: larger than authbridge reads ({DEFAULT_MAX_BYTES // 1024} KiB)"
    return f"{what}: {reason}"


def _issuer_hint(configured: str, discovered: object, url: str | None) -> str:
    if not isinstance(discovered, str):
        return "the metadata has no issuer string: it cannot be trusted"
    if configured.rstrip("/") == discovered.rstrip("/"):
        return (
            f"only the trailing slash differs: use issuer={discovered!r}, exactly as the "
            "provider writes it (tokens carry that spelling in iss)"
        )
    if configured.lower() == discovered.lower():
        return f"only letter case differs: use issuer={discovered!r}"
    where = f" at {url}" if url else ""
    return (
        f"the metadata{where} belongs to another issuer; if it is the provider you mean, use "
        f"issuer={discovered!r}, otherwise correct the URL (or give --discovery-url)"
    )


def _rsa_bits(jwk: Mapping[str, Any]) -> int | None:
    n = jwk.get("n")
    if not isinstance(n, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (ValueError, binascii.Error):
        return None
    return int.from_bytes(raw, "big").bit_length()


def _describe_key(index: int, jwk: object) -> tuple[str, frozenset[str] | None]:
    """One line about a JWKS entry, and the algorithms it may verify (``None``: skipped)."""
    if not isinstance(jwk, dict):
        return f"#{index}: not a JSON object: skipped", None
    kid = jwk.get("kid")
    name = f"kid {to_json(kid[:64])}" if isinstance(kid, str) else f"#{index} (no kid)"
    kty = jwk.get("kty")
    if kty == "RSA":
        bits = _rsa_bits(jwk)
        kind = f"RSA {bits} bits" if bits else "RSA"
    elif kty in ("EC", "OKP"):
        kind = f"{kty} {jwk.get('crv')}"
    elif kty == "oct":
        kind = "oct (a shared secret)"
    else:
        kind = f"kty {to_json(kty)[:32]}"
    extras = "".join(
        f", {member} {to_json(jwk[member])[:32]}" for member in ("alg", "use") if member in jwk
    )
    try:
        key = key_from_jwk(jwk)
    except UnusableKey as exc:
        reason = str(exc.args[0])
        why = _SKIP_REASONS.get(reason.split(":", 1)[0], "the key material does not parse")
        return f"{name}: {kind}{extras}: skipped, {reason} ({why})", None
    algs = ", ".join(a for a in (*DEFAULT_ALGORITHMS, "Ed25519", "Ed448") if a in key.algorithms)
    return f"{name}: {kind}{extras}: verifies {algs}", key.algorithms


def _provider_family(issuer: str) -> str | None:
    parts = urlsplit(issuer)
    host = (parts.hostname or "").lower()
    if host.endswith(".auth0.com"):
        return "auth0"
    if host.endswith((".okta.com", ".oktapreview.com", ".okta-emea.com")):
        return "okta"
    if host in ("login.microsoftonline.com", "sts.windows.net"):
        return "entra"
    if host.startswith("cognito-idp.") and host.endswith(".amazonaws.com"):
        return "cognito"
    if host in ("accounts.google.com", "google.com"):
        return "google"
    if "/realms/" in parts.path:
        return "keycloak"
    return None


_TYP_ADVICE = {
    "auth0": (
        "Auth0: APIs on the default Auth0 token profile send typ JWT (keep token_type="
        "'lenient'); on the RFC 9068 profile they send at+jwt (use 'strict')."
    ),
    "okta": "Okta: keep token_type='lenient' unless your tokens' header says typ at+jwt.",
    "entra": "Microsoft Entra ID sends typ JWT: keep token_type='lenient'.",
    "cognito": (
        "Cognito access tokens carry no typ and no aud: token_type='lenient' with "
        "client_ids=[...] and claim_values={'token_use': 'access'}."
    ),
    "google": (
        "Google signs ID tokens (typ JWT), not JWT access tokens: use GoogleProvider, or "
        "token_type='id_token'."
    ),
    "keycloak": (
        "Keycloak sends typ JWT by default (keep 'lenient'); clients set to emit the RFC 9068 "
        "header send at+jwt (then 'strict')."
    ),
}


def _algorithms(report: _Report, raw: Mapping[str, Any], verifiable: frozenset[str]) -> list[str]:
    """Report the algorithms; return those worth configuring (empty: none usable)."""
    accepted = [a for a in DEFAULT_ALGORITHMS if a in verifiable]
    advertised = raw.get("id_token_signing_alg_values_supported")
    names = [a for a in advertised if isinstance(a, str)] if isinstance(advertised, list) else []
    report.say("Algorithms")
    if names:
        report.say(f"  advertised (id_token_signing_alg_values_supported): {', '.join(names)}")
    else:
        report.say("  advertised: none listed (id_token_signing_alg_values_supported absent)")
    report.say(f"  accepted by authbridge by default: {', '.join(DEFAULT_ALGORITHMS)}")
    report.say(f"  the published keys can verify: {', '.join(accepted) or 'nothing accepted'}")
    for alg in names:
        if alg.upper() == "NONE":
            report.say("  [info] none is advertised: unsigned tokens are never accepted")
        elif alg.startswith("HS"):
            report.say(
                f"  [warn] {alg} is advertised: such tokens are refused unless the provider "
                "is configured with hmac_secret=... (and then only those)"
            )
    if not accepted:
        report.problem(REFUSED, "no published key can verify an algorithm authbridge accepts")
        return []
    usual = [a for a in accepted if a in names] or accepted
    report.say(f"  [tip] narrow algorithms to what the provider signs with, e.g. {usual!r}")
    return usual


async def _keys(
    report: _Report, source: Any, recorder: _Recorder, jwks_uri: str, timeout: float
) -> frozenset[str] | None:
    """Fetch and import the key set; return the algorithms its usable keys verify."""
    report.say("Keys")
    mark = len(recorder.fetches)
    try:
        response = await fetch_json(source, jwks_uri, timeout=timeout, provider=LABEL)
    except ProviderUnavailable as exc:
        for line in recorder.lines(mark):
            report.say(line)
        report.problem(_failure_code(exc.reason), _jwks_problem(exc.reason, timeout))
        return None
    for line in recorder.lines(mark):
        report.say(line)
    if response.cache_control:
        report.say(f"  Cache-Control: {response.cache_control}")
    with warnings.catch_warnings():
        # joserfc warns about weak keys on stderr; each skipped key is reported below.
        warnings.simplefilter("ignore", SecurityWarning)
        try:
            keyset = import_jwks(response.body, source=LABEL)
        except ValueError:
            report.problem(REFUSED, "the JWKS has no keys array")
            return None
        entries = response.body["keys"]
        described = [_describe_key(index, entry) for index, entry in enumerate(entries)]
    verifiable: set[str] = set()
    usable = 0
    kids: dict[str, int] = {}
    for entry, (text, algs) in zip(entries, described, strict=True):
        report.say(f"  {'[ok]  ' if algs else '[skip]'} {text}")
        if algs is not None:
            usable += 1
            verifiable |= algs
            kid = entry.get("kid")
            if isinstance(kid, str):
                kids[kid] = kids.get(kid, 0) + 1
    report.say(f"  {_count(len(entries), 'key')} published, {len(keyset)} usable")
    if len(keyset) != usable:
        report.say(
            f"  [warn] the key set import kept {len(keyset)} keys, not {usable}: trust that count"
        )
    for kid, count in kids.items():
        if count > 1:
            report.say(f"  [warn] {count} keys share kid {to_json(kid[:64])}: each is tried")
    if not len(keyset):
        report.problem(REFUSED, "the JWKS has no usable key")
        return None
    return frozenset(verifiable)


async def _endpoints(
    report: _Report, cache: MetadataCache, recorder: _Recorder, metadata: ProviderMetadata
) -> None:
    report.say("Endpoints")
    uses = {
        "introspection_endpoint": "for opaque tokens: introspection=Introspection(...)",
        "userinfo_endpoint": "usable by UserinfoProvider",
    }
    for name, use in uses.items():
        label = name.removesuffix("_endpoint")
        mark = len(recorder.fetches)
        try:
            # As the library reads it: from the RFC 8414 document when the OpenID
            # configuration lacks it.
            url = await cache.endpoint(name)
        except ProviderUnavailable as exc:
            for line in recorder.lines(mark):
                report.say(line)
            report.say(f"  [warn] {label}: the RFC 8414 document could not be used ({exc.reason})")
            continue
        for line in recorder.lines(mark):
            report.say(line)
        if url is None:
            report.say(f"  {label}: none advertised")
        else:
            where = "" if url == getattr(metadata, name) else " (from the RFC 8414 document)"
            report.say(f"  {label}: {url}{where} ({use})")


def _token_types(report: _Report, issuer: str) -> None:
    report.say("Token type (typ header)")
    report.say(
        "  token_type='strict' accepts only typ at+jwt (RFC 9068); 'lenient' (the default) also "
        "JWT or no typ; 'id_token' takes OpenID Connect ID tokens"
    )
    family = _provider_family(issuer)
    if family:
        report.say(f"  {_TYP_ADVICE[family]}")
    report.say('  See what yours send: authbridge decode - <<< "$TOKEN" (look at header.typ)')


def _snippet(issuer: str, audience: list[str], algorithms: list[str]) -> str:
    aud = repr(audience[0]) if len(audience) == 1 else repr(audience)
    return f'OIDCProvider("idp", issuer={issuer!r}, audience={aud}, algorithms={algorithms!r})'


async def _discover(
    report: _Report,
    cache: MetadataCache,
    recorder: _Recorder,
    *,
    issuer: str,
    discovery_url: str | None,
    timeout: float,
) -> ProviderMetadata | None:
    report.say("Metadata")
    try:
        metadata = await cache.get()
    except ProviderUnavailable as exc:
        for line in recorder.lines(0):
            report.say(line)
        reason = exc.reason
        answered = recorder.answered(0)
        if reason == "discovery_issuer_mismatch":
            found = exc.detail.get("discovered")
            report.problem(REFUSED, "issuer mismatch: the metadata names another issuer")
            report.say(f"  configured: {to_json(issuer)}")
            report.say(f"  discovered: {to_json(found)}")
            report.say(f"  [tip] {_issuer_hint(issuer, found, answered)}")
        else:
            # The library's own words: what the app's start-up log says too.
            explanation, _ = describe_unavailable(exc)
            report.problem(_failure_code(reason), explanation)
        return None
    for line in recorder.lines(0):
        report.say(line)
    oidc, rfc8414 = discovery_urls(issuer)
    kind = {oidc: "OpenID Connect discovery", rfc8414: "RFC 8414 metadata"}.get(
        recorder.answered(0) or "", "the --discovery-url document"
    )
    report.say(f"  [ok] found by {kind}")
    report.say(f"  [ok] the metadata names exactly this issuer: {to_json(issuer)}")
    return metadata


async def _run(
    issuer: str,
    audience: list[str],
    discovery_url: str | None,
    timeout: float,
    logs: list[logging.LogRecord],
) -> int:
    report = _Report()
    recorder = _Recorder()
    try:
        # The library's own outbound client: proxy and CA settings from the environment.
        http = HttpClientHolder()
    except ConfigurationError as exc:
        fail(f"error: {exc}", UNAVAILABLE)
    http.open()
    async with http.session() as client:
        hooks = client.event_hooks
        client.event_hooks = {
            "request": [*hooks.get("request", []), recorder.on_request],
            "response": [*hooks.get("response", []), recorder.on_response],
        }
    source = http.session
    cache = MetadataCache(
        source, issuer, clock=system_clock, url=discovery_url, label=LABEL, timeout=timeout
    )
    started = time.perf_counter()
    report.say(f"Checking issuer {to_json(issuer)}")
    # The client's settings, as the library logs them (e.g. the proxy from HTTPS_PROXY).
    for record in logs:
        if record.name == "authbridge.http" and record.levelno >= logging.INFO:
            report.say(record.getMessage())
    verifiable: frozenset[str] | None = None
    algorithms: list[str] = []
    try:
        metadata = await _discover(
            report,
            cache,
            recorder,
            issuer=issuer,
            discovery_url=discovery_url,
            timeout=timeout,
        )
        if metadata is not None:
            if metadata.jwks_uri is None:
                report.problem(REFUSED, "the metadata has no jwks_uri: JWTs cannot be verified")
            else:
                verifiable = await _keys(report, source, recorder, metadata.jwks_uri, timeout)
            if verifiable is not None:
                algorithms = _algorithms(report, metadata.raw, verifiable)
            _token_types(report, issuer)
            await _endpoints(report, cache, recorder, metadata)
    finally:
        await http.aclose()
    total = (time.perf_counter() - started) * 1000
    report.say(f"{_count(len(recorder.fetches), 'request')}, {total:.0f} ms in all")
    if report.code != OK:
        fail(f"check failed: {'; '.join(report.problems)}", report.code)
    report.say("Result: usable. authbridge can verify this issuer's JWTs.")
    if audience:
        report.say(f"  {_snippet(issuer, audience, algorithms)}")
    else:
        report.say("  [tip] give --audience (your API's identifier) for a configuration to paste")
    return OK


@command("check", "Diagnose an issuer: metadata, keys, advice.")
def check(
    issuer: Annotated[
        str,
        typer.Argument(
            metavar="ISSUER",
            help="The issuer URL, exactly as its tokens' iss (trailing slash included).",
            show_default=False,
        ),
    ],
    audience: Annotated[
        list[str] | None,
        typer.Option(
            metavar="AUDIENCE", help="Your API's identifier (the tokens' aud); repeatable."
        ),
    ] = None,
    discovery_url: Annotated[
        str | None,
        typer.Option(
            "--discovery-url",
            metavar="URL",
            help="Fetch the metadata from here instead of the well-known URLs.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Bound on each request.", min=0.1)
    ] = 5.0,
) -> None:
    """Check that authbridge can verify an issuer's tokens, and how to configure it.

    Fetches the metadata (OpenID Connect discovery, then RFC 8414), checks that
    it names exactly ISSUER, fetches the JWKS and reports each key, the
    algorithms, token type advice, the introspection and userinfo endpoints,
    and the time of each request. Exit code 0 when usable, 1 when not usable
    as given, 2 when the issuer cannot be reached.
    """
    try:
        check_issuer_url(issuer)
        if audience:
            OIDCProvider("idp", issuer=issuer, audience=audience, discovery_url=discovery_url)
    except ConfigurationError as exc:
        fail(f"error: {exc}", UNAVAILABLE)
    with library_logs() as logs:
        code = asyncio.run(_run(issuer, list(audience or ()), discovery_url, timeout, logs))
    raise typer.Exit(code)
