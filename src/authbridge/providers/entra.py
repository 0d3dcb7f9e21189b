"""Microsoft Entra ID (Azure AD): one tenant, or the multi-tenant endpoints, for every role.

A multi-tenant app (``organizations`` or ``common``) gets one discovery
document whose ``issuer`` is a template,
``https://login.microsoftonline.com/{tenantid}/v2.0``: every tenant signs its
tokens with its own ``iss``. A token is accepted only when its ``tid`` is a
GUID that, substituted into the template, gives exactly its ``iss`` (and, with
an allow-list, is one of the allowed tenants). A token whose ``iss`` names one
tenant and ``tid`` another, a ``tid`` that is not a GUID (a path, a URL, the
placeholder itself) and an ``iss`` that still holds ``{tenantid}`` are all
refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from .._clock import Clock
from .._http import ClientSource
from ..client import ExternalIdentity, LoginEndpoints, TokenEndpointAuth
from ..client._oidc import OIDCLogin
from ..errors import ConfigurationError, InvalidToken
from ..jose import JWTPolicy, KeySet, ParsedJWT, VerificationKey, check_claims
from ..jose._jwt import TokenType
from ..resource import Principal
from ..resource.base import Verified
from ..resource.provider import BoundProvider
from ._login import claims_identity, verified_flag, with_login_client
from .oidc import OIDCProvider

ENTRA_AUTHORITY = "https://login.microsoftonline.com"
TENANT_PLACEHOLDER = "{tenantid}"
MULTI_TENANT = ("organizations", "common")
CONSUMER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
"""The tenant of personal Microsoft accounts (never accepted with ``organizations``)."""

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_POLICY_CACHE = 256


def is_tenant_id(value: object) -> bool:
    """Whether ``value`` is a tenant id as Entra writes it: a lowercase GUID."""
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


class EntraProvider(OIDCProvider):
    """Microsoft Entra ID: its v2.0 access tokens on routes, "Sign in with Microsoft", exchange.

    ``tenant`` is your tenant id (a GUID): one issuer,
    ``https://login.microsoftonline.com/<tenant>/v2.0``. For a multi-tenant
    app, ``"organizations"`` (work and school accounts) or ``"common"`` (also
    personal Microsoft accounts): the discovery document
    (``.../<tenant>/v2.0/.well-known/openid-configuration``) names the issuer
    template ``https://login.microsoftonline.com/{tenantid}/v2.0``, and a token
    is accepted only when its ``tid`` is a GUID which, put in the template,
    gives exactly its ``iss``; ``tenants`` narrows that to an allow-list.

    Resource server: tokens issued for your API (``aud`` = its client id,
    ``audience`` defaults to ``client_id``); roles from ``roles``; the client
    is ``azp`` (``appid`` in v1 tokens). Tokens for Microsoft Graph are not
    yours and never verify. A multi-tenant provider with an allow-list
    routes each allowed tenant's issuer to itself; without an allow-list the
    resource server needs to route by the issuer template (see
    ``EntraProvider.matches_issuer``).

    Login: OpenID Connect with PKCE and a nonce; endpoints and keys from
    discovery; RP-initiated logout. Identities are keyed by the tenant's own
    issuer and ``sub`` (pairwise: one value per app). Entra's ``email`` claim
    is not verified by Microsoft (it can be any address the tenant's admin or
    user typed): it counts as verified only with the optional ``xms_edov``
    claim (email domain owner verified) set to true.

    Token exchange: an Entra token whose ``azp`` or ``aud`` is one of your
    client ids becomes the same identity as a browser login.

    Args:
        tenant: The tenant id (GUID), ``"organizations"`` or ``"common"``.
        audience: Accepted ``aud`` values (your API's client id; ``client_id``
            by default).
        name: Provider name in the [Principal][authbridge.Principal].
        tenants: Multi-tenant only: the tenant ids accepted (all by default).
        client_id: The app registration's application (client) id: enables login.
        client_secret: Its client secret.
        client_ids: Other client ids counted as yours (their tokens must name
            them in ``azp``).
        login_scopes: Scopes asked for at login.
        token_endpoint_auth: How the app authenticates at the token endpoint.
        display_name: The name on the login chooser.
        authority: The cloud's login host (national clouds:
            ``https://login.microsoftonline.us``, ...; tests: a fake).
        jwks_uri: Use this key set instead of the discovered one.
        algorithms: Accepted JWS algorithms (Entra signs with RS256).
        token_type: See [OIDCProvider][authbridge.OIDCProvider].
        leeway: Tolerated clock skew in seconds (at most 300).
        required_claims: Claims that must be present besides ``iss``, ``exp``, ``aud``.
        roles_claims: Claim paths to read roles from.

    Raises:
        ConfigurationError: a tenant that is neither a GUID nor a multi-tenant
            name, an allow-list with a single tenant or with a non-GUID, no audience.
    """

    def __init__(
        self,
        tenant: str,
        audience: str | Sequence[str] | None = None,
        *,
        name: str = "entra",
        tenants: Sequence[str] | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_ids: Sequence[str] | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_basic",
        display_name: str = "Microsoft",
        authority: str = "https://login.microsoftonline.com",
        jwks_uri: str | None = None,
        algorithms: Sequence[str] = ("RS256",),
        token_type: TokenType = "lenient",
        leeway: float = 30.0,
        required_claims: Sequence[str] = (),
        roles_claims: Sequence[str | tuple[str, ...]] = ("roles",),
    ) -> None:
        authority = authority.rstrip("/")
        self.tenant = tenant
        self.multi_tenant = tenant in MULTI_TENANT
        if not self.multi_tenant and not is_tenant_id(tenant):
            raise ConfigurationError(
                "invalid_entra_tenant",
                provider=name,
                message=(
                    "tenant is the tenant id (a lowercase GUID), 'organizations' or 'common' "
                    f"(personal accounts only: {CONSUMER_TENANT!r}), got {tenant!r}"
                ),
            )
        self.tenants = _allowed_tenants(name, tenant, tenants)
        if self.multi_tenant:
            issuer = f"{authority}/{TENANT_PLACEHOLDER}/v2.0"
            discovery_url: str | None = (
                f"{authority}/{tenant}/v2.0/.well-known/openid-configuration"
            )
        else:
            issuer, discovery_url = f"{authority}/{tenant}/v2.0", None
        if audience is None and client_id is not None:
            audience = client_id
        super().__init__(
            name,
            issuer,
            audience,
            client_ids=with_login_client(client_id, client_ids),
            client_id_claims=("azp", "appid"),
            jwks_uri=jwks_uri,
            discovery_url=discovery_url,
            algorithms=algorithms,
            token_type=token_type,
            leeway=leeway,
            required_claims=required_claims,
            roles_claims=roles_claims,
            client_id=client_id,
            client_secret=client_secret,
            login_scopes=login_scopes,
            token_endpoint_auth=token_endpoint_auth,
            display_name=display_name,
        )
        self.authority = authority

    def __repr__(self) -> str:
        return f"EntraProvider({self.name!r}, tenant={self.tenant!r})"

    # -- the tenant rule ---------------------------------------------------------------

    def tenant_issuer(self, claims: Mapping[str, Any]) -> str:
        """The issuer a token with these claims must carry, by the tenant rule.

        Single tenant: the configured issuer. Multi-tenant: ``tid`` must be a
        GUID (allowed, when ``tenants`` is set; never the personal-account
        tenant with ``organizations``), substituted into the issuer template,
        and the result must equal ``iss`` exactly.

        Raises:
            InvalidToken: ``invalid_tenant`` (``tid`` missing or not a GUID),
                ``tenant_not_allowed``, ``issuer_mismatch``.
        """
        if not self.multi_tenant:
            return self.issuer
        tid = claims.get("tid")
        if not is_tenant_id(tid):
            raise InvalidToken("invalid_tenant", provider=self.name, claim="tid")
        assert isinstance(tid, str)  # noqa: S101 - is_tenant_id checked it
        if (self.tenants is not None and tid not in self.tenants) or (
            self.tenant == "organizations" and tid == CONSUMER_TENANT
        ):
            raise InvalidToken("tenant_not_allowed", provider=self.name, claim="tid")
        expected = self.issuer.replace(TENANT_PLACEHOLDER, tid)
        if claims.get("iss") != expected:
            raise InvalidToken("issuer_mismatch", provider=self.name, claim="iss")
        return expected

    def matches_issuer(self, iss: str) -> bool:
        """Whether ``iss`` has the shape of one of this provider's tenant issuers.

        For a resource server routing JWTs whose ``iss`` is not among the exact
        issuers: the issuer template with a GUID (allowed, if an allow-list is
        set) in place of ``{tenantid}``. Routing only: `tenant_issuer` decides.
        """
        if not self.multi_tenant:
            return iss == self.issuer
        prefix, _, suffix = self.issuer.partition(TENANT_PLACEHOLDER)
        if not (iss.startswith(prefix) and iss.endswith(suffix)):
            return False
        tid = iss[len(prefix) : len(iss) - len(suffix)]
        return is_tenant_id(tid) and (self.tenants is None or tid in self.tenants)

    def tenant_issuers(self) -> tuple[str, ...]:
        """The exact issuers routed here: the issuer, or each allowed tenant's."""
        if not self.multi_tenant:
            return (self.issuer,)
        if self.tenants is None:
            return ()
        return tuple(self.issuer.replace(TENANT_PLACEHOLDER, t) for t in sorted(self.tenants))

    # -- resource role -----------------------------------------------------------------

    def principal_from(self, claims: Mapping[str, Any]) -> Principal:
        """As [OIDCProvider][authbridge.OIDCProvider], with ``issuer`` the tenant's own."""
        principal = super().principal_from(claims)
        iss = claims.get("iss")
        if self.multi_tenant and isinstance(iss, str):
            return principal.model_copy(update={"issuer": iss})
        return principal

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float = 5.0) -> EntraSource:
        """Create the runtime for one app."""
        return EntraSource(self, client, clock, timeout=timeout)

    # -- login and exchange ------------------------------------------------------------

    def login_options(self) -> dict[str, Any]:
        """The tenant rule goes to the login runtime too."""
        return {**super().login_options(), "provider": self}

    def identity_issuer(self, principal: Principal) -> str:
        """The tenant's own issuer (the principal's, checked by the tenant rule)."""
        return principal.issuer

    def identity_from_token(self, principal: Principal) -> ExternalIdentity | None:
        """The identity, the email verified only with ``xms_edov``."""
        claims = principal.claims
        return claims_identity(
            self.name,
            principal.issuer,
            claims,
            email_verified=verified_flag(claims.get("xms_edov")),
        )


def _allowed_tenants(
    name: str, tenant: str, tenants: Sequence[str] | None
) -> frozenset[str] | None:
    if tenants is None:
        return None
    if tenant not in MULTI_TENANT:
        raise ConfigurationError(
            "tenants_need_multi_tenant",
            provider=name,
            message="tenants= is an allow-list for tenant='organizations' or 'common'",
        )
    allowed = frozenset(tenants)
    if isinstance(tenants, str) or not allowed or not all(is_tenant_id(t) for t in allowed):
        raise ConfigurationError(
            "invalid_entra_tenant",
            provider=name,
            message="tenants= lists tenant ids, each a lowercase GUID",
        )
    if tenant == "organizations" and CONSUMER_TENANT in allowed:
        raise ConfigurationError(
            "invalid_entra_tenant",
            provider=name,
            message="'organizations' excludes personal accounts: use tenant='common'",
        )
    return allowed


class EntraSource(BoundProvider):
    """An `EntraProvider` inside one app: the tenant rule before the usual checks."""

    def __init__(
        self, provider: EntraProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        super().__init__(provider, client, clock, timeout=timeout)
        self.entra = provider
        self.jwt_issuers = provider.tenant_issuers()
        self._policies: OrderedDict[str, JWTPolicy] = OrderedDict()

    def matches_issuer(self, iss: str) -> bool:
        """See `EntraProvider.matches_issuer`."""
        return self.entra.matches_issuer(iss)

    def _policy(self, issuer: str) -> JWTPolicy:
        policy = self._policies.get(issuer)
        if policy is None:
            policy = dataclasses.replace(
                self.entra.policy, issuer=issuer, issuer_aliases=frozenset()
            )
            if len(self._policies) >= _POLICY_CACHE:
                self._policies.popitem(last=False)
            self._policies[issuer] = policy
        return policy

    def _finish(
        self,
        parsed: ParsedJWT,
        alg: str,
        keyset: KeySet,
        candidates: tuple[VerificationKey, ...],
    ) -> Verified:
        if not self.entra.multi_tenant:
            return super()._finish(parsed, alg, keyset, candidates)
        claims = parsed.claims
        policy = self._policy(self.entra.tenant_issuer(claims))  # before any signature work
        if not candidates:
            raise InvalidToken("unknown_key")
        for key in candidates[:4]:
            if key.verify(alg, parsed.signing_input, parsed.signature):
                break
        else:
            raise InvalidToken("bad_signature")
        check_claims(claims, policy, self._clock())
        return Verified(self.entra.principal_from(claims), float(claims["exp"]), keyset)


class EntraLogin(OIDCLogin):
    """ "Sign in with Microsoft" inside one app (see `EntraProvider`)."""

    def __init__(self, *, provider: EntraProvider, **options: Any) -> None:
        super().__init__(**options)
        self.entra = provider

    async def endpoints(self) -> LoginEndpoints:
        """The discovered endpoints; multi-tenant: no single issuer for RFC 9207's ``iss``."""
        found = await super().endpoints()
        if self.entra.multi_tenant and found.issuer is not None:
            return dataclasses.replace(found, issuer=None, iss_parameter_supported=False)
        return found

    def expected_issuer(self, claims: Mapping[str, Any]) -> str | None:
        """The tenant rule (see `EntraProvider.tenant_issuer`); ``None`` refuses."""
        try:
            return self.entra.tenant_issuer(claims)
        except InvalidToken:
            return None

    def identity_from(
        self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None, id_token: str
    ) -> ExternalIdentity:
        """Keyed by the tenant's issuer and ``sub``; the email verified only with ``xms_edov``."""
        identity = super().identity_from(claims, userinfo, id_token)
        iss = claims.get("iss")
        return dataclasses.replace(
            identity,
            issuer=iss if isinstance(iss, str) else identity.issuer,
            email_verified=identity.email is not None and verified_flag(claims.get("xms_edov")),
        )


EntraProvider.login_class = EntraLogin
