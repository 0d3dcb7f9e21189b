"""The user's delegations over HTTP: ``/me/delegations``.

A user hands a robot (a registered confidential client) a token carrying both
identities (RFC 8693 ``act``), with scopes and a lifetime the user chooses,
and can see and revoke what they handed out:

- ``POST /me/delegations``: JSON ``{actor, scope?, audience?, expires_in,
  label?, may_delegate?}`` → 201 ``{delegation, token}``; the token is for the
  robot (with a refresh token when the robot's client has that grant).
- ``GET /me/delegations``: the caller's delegations, newest first, at most
  100, active ones only unless ``?include_inactive=true``.
- ``DELETE /me/delegations/{delegation_id}``: revoke one → 204; 404 for an id
  that is not one of the caller's (whether it exists or not: no oracle).

The caller is a user of the app itself: one of its own access tokens, or a
browser session (whose unsafe requests need the session's CSRF token). A
provider's token is refused (403 ``access_denied``), and only the user, not a
robot acting for them, may list or revoke (``direct_principal``); a robot may
create a delegation only under a delegation that allows passing it on
(``may_delegate``). An access token revoked at the revocation endpoint (RFC
7009) is refused by all three routes (401, as by ``active_principal``).
Creations are limited per user (`CREATIONS_PER_USER` per `CREATIONS_WINDOW`,
counted in the store so every instance shares them), and every request part
is bounded before any work
(`MAX_BODY_BYTES`, `MAX_LABEL_CHARS`, `MAX_SCOPES`...).

Every answer is JSON with ``Cache-Control: no-store``, ASCII only, with ``<``,
``>`` and ``&`` escaped (a label is the user's text). Refusals are RFC 6749
§5.2 OAuth error bodies (``{"error": ..., "error_description": ...}``) with a
fixed description, never a value from the request; the authentication
refusals (401, and 403 for a missing scope or CSRF token) are those of every
protected route.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Security, WebSocketException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from .._json import loads as strict_json
from ..errors import ConfigurationError, StoreUnavailable
from ..issuer import OAuthError, _ratelimit
from ..issuer._runtime import store_unavailable
from ..resource.principal import Principal
from ..store import DelegationRecord
from ._issuer import IssuerEndpoints, _log_bug, oauth_error_response, read_bounded_body
from ._openapi import REFUSAL_SCHEMA
from ._security import PrincipalDependency, refuse_revoked

if TYPE_CHECKING:
    from ..issuer import AppIssuer
    from ._bridge import AuthBridge

logger = logging.getLogger("authbridge.fastapi")

PATH = "/me/delegations"
"""Where the delegation routes are served."""

MAX_BODY_BYTES = 8 * 1024
"""Largest request body of ``POST /me/delegations``."""

MAX_LABEL_CHARS = 200
"""Longest label of a delegation (the user's note, such as "garage robot")."""

MAX_ID_CHARS = 200
"""Longest client id (``actor``) accepted."""

MAX_SCOPE_CHARS = 2048
"""Longest ``scope`` string."""

MAX_SCOPES = 64
"""Most scope tokens in ``scope``."""

MAX_AUDIENCE_CHARS = 2048
"""Longest ``audience``."""

MAX_EXPIRES_IN = 10 * 365 * 86400
"""Largest ``expires_in`` accepted (seconds); the issuer caps it at its own maximum."""

CREATIONS_PER_USER = 30
"""Delegations one user may create per `CREATIONS_WINDOW` (beyond: 429 ``slow_down``)."""

CREATIONS_WINDOW = 60.0
"""The window of `CREATIONS_PER_USER`, in seconds."""

RATE_KEY_PREFIX = "dlg:create:"

JSON_TYPE = "application/json"

HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
"""Headers of every answer (a created delegation's body holds a token)."""

# Delegation ids are "dlg_" + 22 url-safe characters; anything unlike an id is
# unknown at once, with no store lookup.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Characters a label may not hold: controls (C0, DEL, C1) and line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


# --- models (the OpenAPI document's schemas) --------------------------------------------------


class DelegationCreate(BaseModel):
    """A delegation to create: who may act for you, with what, for how long."""

    model_config = ConfigDict(extra="forbid", strict=True, title="DelegationCreate")

    actor: str = Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="The client id of the robot or service that will act for you.",
    )
    scope: str | None = Field(
        default=None,
        max_length=MAX_SCOPE_CHARS,
        description=(
            "Space-separated scopes to hand over, within yours and the actor's "
            "(default: all of those)."
        ),
    )
    audience: str | None = Field(
        default=None,
        max_length=MAX_AUDIENCE_CHARS,
        description="The API the actor's tokens are for, among your token's audiences.",
    )
    expires_in: StrictInt = Field(
        gt=0,
        le=MAX_EXPIRES_IN,
        description=(
            "Seconds until the delegation ends; no token of it lives longer. Capped at the "
            "issuer's maximum (a day by default)."
        ),
    )
    label: str = Field(
        default="",
        max_length=MAX_LABEL_CHARS,
        description='Your note, e.g. "garage robot" (no control characters).',
    )
    may_delegate: StrictBool = Field(
        default=False, description="Whether the actor may pass the delegation on to another actor."
    )


class Delegation(BaseModel):
    """A delegation you handed out."""

    id: str = Field(description="The delegation's id (for `DELETE /me/delegations/{id}`).")
    actor: str = Field(description="The client id acting for you.")
    scope: str = Field(description="The scopes handed over, space-separated.")
    audiences: list[str] = Field(description="The audiences of its tokens.")
    label: str = Field(description="Your note.")
    may_delegate: bool = Field(description="Whether the actor may pass it on.")
    created_at: float = Field(description="When it was created (POSIX seconds).")
    expires_at: float = Field(description="When it ends (POSIX seconds).")
    revoked_at: float | None = Field(description="When it was revoked, if it was.")
    active: bool = Field(description="Neither expired nor revoked.")
    parent: str | None = Field(
        description=(
            "The delegation it was made under (by a robot allowed to pass one on); revoking "
            "that one revokes this one too."
        )
    )


class DelegatedToken(BaseModel):
    """The actor's tokens (an RFC 6749 §5.1 token response): hand them to the robot."""

    access_token: str = Field(description="An access token for the actor, carrying `act`.")
    token_type: str = Field(description="`Bearer`.")
    expires_in: int = Field(description="Seconds the access token lives.")
    scope: str = Field(description="Its scopes, space-separated.")
    issued_token_type: str | None = Field(
        default=None, description="`urn:ietf:params:oauth:token-type:access_token`."
    )
    refresh_token: str | None = Field(
        default=None,
        description=(
            "When the actor's client has the refresh_token grant: it refreshes with its own "
            "client credentials, never past the delegation's end."
        ),
    )


class DelegationCreated(BaseModel):
    """A created delegation and the actor's tokens."""

    delegation: Delegation
    token: DelegatedToken


class DelegationList(BaseModel):
    """Your delegations, newest first."""

    delegations: list[Delegation]


class OAuthErrorBody(BaseModel):
    """An OAuth 2.0 error (RFC 6749 §5.2)."""

    error: str = Field(
        description=(
            "`invalid_request`, `invalid_scope`, `invalid_target`, `access_denied`, "
            "`slow_down`, `temporarily_unavailable`..."
        )
    )
    error_description: str | None = Field(
        default=None, description="A fixed English sentence (never a value of the request)."
    )


SCHEMAS: tuple[type[BaseModel], ...] = (DelegationCreate,)
"""Models the routes read themselves: added to the OpenAPI document's components."""


# --- answers ------------------------------------------------------------------------------------


class EscapedJSONResponse(JSONResponse):
    """JSON in ASCII with ``<``, ``>`` and ``&`` escaped: inert wherever it is pasted or sniffed.

    Those three characters can only occur inside JSON strings, where
    ``\\u003c``-style escapes mean the same text.
    """

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return (
            text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        ).encode("ascii")


def _answer(body: Any, status_code: int = 200) -> Response:
    return EscapedJSONResponse(body, status_code=status_code, headers=HEADERS)


def _error(error: OAuthError, realm: str) -> Response:
    response = oauth_error_response(error, realm=realm)
    response.headers.update(HEADERS)
    return response


def _invalid(reason: str, description: str, *, status: int = 400) -> OAuthError:
    return OAuthError("invalid_request", description, reason=reason, status=status)


def _not_found() -> OAuthError:
    return OAuthError(
        "invalid_request", "No such delegation", reason="delegation_not_found", status=404
    )


def describe(record: DelegationRecord, now: float) -> dict[str, Any]:
    """A delegation record as the API shows it (`Delegation`)."""
    return {
        "id": record.id,
        "actor": record.actor,
        "scope": " ".join(sorted(record.scopes)),
        "audiences": list(record.audiences),
        "label": record.label,
        "may_delegate": record.may_delegate,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "active": record.active(now),
        "parent": record.parent,
    }


# --- the request body -------------------------------------------------------------------------


async def read_json(request: Request) -> Any:
    """The request's JSON body, read as it arrives and cut off at `MAX_BODY_BYTES`.

    Parsed strictly (`authbridge._json.loads`): no duplicate members, lone
    surrogates, ``NaN`` or deep nesting.

    Raises:
        OAuthError: ``invalid_request``: 415 for another media type, 413 for an
            oversized body, 408 for one too slow, 400 for anything but one
            JSON value.
    """
    media_type = (request.headers.get("content-type") or "").partition(";")[0]
    if media_type.strip().lower() != JSON_TYPE:
        raise _invalid("json_media_type", f"The request body must be {JSON_TYPE}", status=415)
    body = await read_bounded_body(request, limit=MAX_BODY_BYTES, kind="json")
    try:
        return strict_json(body)
    except ValueError:  # UnicodeDecodeError, lone surrogates, duplicates, depth...
        raise _invalid("json_malformed", "The request body is not a valid JSON object") from None


def parse_create(value: Any) -> tuple[DelegationCreate, tuple[str, ...] | None]:
    """The validated body of a creation and its scope tokens (``None``: not given).

    Raises:
        OAuthError: ``invalid_request`` naming the first wrong member (by its
            name in the model, never its value); ``invalid_scope`` for a scope
            string that is not RFC 6749 §3.3 syntax or has too many scopes.
    """
    if not isinstance(value, dict):
        raise _invalid("json_not_an_object", "The request body is not a valid JSON object")
    try:
        body = DelegationCreate.model_validate(value)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"] if exc.error_count() else ()
        name = loc[0] if loc and loc[0] in DelegationCreate.model_fields else None
        if name is None:
            raise _invalid("unknown_member", "The request body has an unknown member") from None
        raise _invalid(f"invalid_member:{name}", f"Invalid or missing {name}") from None
    if _CONTROL.search(body.label):
        raise _invalid("invalid_member:label", "Invalid or missing label")
    if body.scope is None:
        return body, None
    scopes = tuple(dict.fromkeys(s for s in body.scope.split(" ") if s))
    if len(scopes) > MAX_SCOPES or not all(_SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise OAuthError("invalid_scope", "Invalid scope", reason="scope_syntax")
    return body, scopes or None


# --- the routes ---------------------------------------------------------------------------------


class _DelegationRoute(APIRoute):
    """A route whose refusals are OAuth error bodies: validation, OAuth errors, outages.

    The authentication refusals (``HTTPException`` from the dependencies) are
    left to FastAPI, as on every protected route.
    """

    realm = ""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        realm = self.realm

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError:
                # Only the query and path: FastAPI's message would echo the value.
                return _error(_invalid("invalid_parameter", "Invalid request parameter"), realm)
            except OAuthError as exc:
                if exc.status >= 500 or exc.status == 429:
                    logger.warning("Delegation request refused: %s", exc.reason)
                else:
                    logger.info("Delegation request refused: %s", exc.reason)
                return _error(exc, realm)
            except StoreUnavailable as exc:
                logger.warning("Delegations unavailable: store_unavailable:%s", exc.reason)
                return _error(store_unavailable(exc), realm)
            except (HTTPException, WebSocketException):
                raise  # the authentication refusals
            except Exception as exc:  # noqa: BLE001 - a bug must not become a leak
                _log_bug(exc)
                return _answer({"error": "server_error"}, 500)

        return route


_FORBIDDEN_CREATE = (
    "A token of another provider (`access_denied`), a robot acting for you whose delegation "
    "may not be passed on; or the token lacks a required scope, a session's CSRF token is "
    "missing or wrong"
)
_FORBIDDEN_DIRECT = (
    "A token of another provider (`access_denied`); or a delegated token (a robot acting "
    "for you), the token lacks a required scope, a session's CSRF token is missing or wrong"
)


def _responses(*statuses: int, forbidden: str = _FORBIDDEN_DIRECT) -> dict[int | str, Any]:
    texts = {
        400: "Refused: an invalid body or parameter (`invalid_request`), scope "
        "(`invalid_scope`) or audience (`invalid_target`), an unknown actor...",
        403: forbidden,
        404: "Not one of your delegations",
        408: "The body was not received in time",
        413: "The body is too large",
        415: "The body is not JSON",
        429: "Too many delegations created; retry after `Retry-After` seconds",
    }
    responses: dict[int | str, Any] = {
        status: {"model": OAuthErrorBody, "description": texts[status]} for status in statuses
    }
    if 403 in statuses:
        refusal = json.loads(json.dumps(REFUSAL_SCHEMA))
        responses[403] = {
            "description": texts[403],
            "content": {
                JSON_TYPE: {
                    "schema": {"anyOf": [{"$ref": "#/components/schemas/OAuthErrorBody"}, refusal]}
                }
            },
        }
    # Anything else refused is an OAuth error too (and FastAPI's 422 never is sent).
    responses["4XX"] = {"model": OAuthErrorBody, "description": "Other refusals"}
    return responses


def delegation_router(bridge: AuthBridge, endpoints: IssuerEndpoints) -> APIRouter:
    """The ``/me/delegations`` routes of ``bridge``'s issuer (see the module's description)."""
    runtime = endpoints.runtime
    config = runtime.config
    scopes = [bridge.delegations_scope] if bridge.delegations_scope else []
    route_class = type("DelegationRoute", (_DelegationRoute,), {"realm": config.issuer})
    router = APIRouter(prefix=PATH, tags=["delegations"], route_class=route_class)

    async def own_user(
        principal: Principal,
        request: Request,
        dependency: PrincipalDependency,
        *,
        revocation: bool = True,
    ) -> str:
        await endpoints.starter.ensure_started()
        if principal.provider != config.name or not principal.subject:
            raise OAuthError(
                "access_denied",
                "Use a token of this app or a session",
                reason="not_own_token",
                status=403,
            )
        # One of the app's own tokens: revoked at /oauth/revoke, it does nothing here.
        if revocation:
            await refuse_revoked(dependency, request, scopes)
        return principal.subject

    @router.post(
        "",
        status_code=201,
        response_model=DelegationCreated,
        responses=_responses(400, 403, 408, 413, 415, 429, forbidden=_FORBIDDEN_CREATE),
        name="authbridge_create_delegation",
        operation_id="authbridge_create_delegation",
        summary="Let a robot act for you",
        description=(
            "Creates a delegation to `actor` (a registered confidential client) and returns "
            "its tokens, to hand to the robot. The scopes are at most yours and the actor's; "
            "the delegation and every token of it end at `expires_in`."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON_TYPE: {"schema": {"$ref": _ref(DelegationCreate).strip('"')}}},
            }
        },
    )
    async def create_delegation(
        request: Request,
        user: Principal = Security(bridge.principal, scopes=scopes),
    ) -> Response:
        # A robot's token is checked by the delegations (its delegation's end first: 403).
        user_id = await own_user(user, request, bridge.principal, revocation=not user.actors)
        now = runtime.clock()
        await _ratelimit.count(
            runtime.store.rate_limits,
            RATE_KEY_PREFIX + hashlib.sha256(user_id.encode("utf-8", "replace")).hexdigest(),
            limit=CREATIONS_PER_USER,
            window=CREATIONS_WINDOW,
            now=now,
            reason="rate_limited_delegations",
        )
        body, wanted = parse_create(await read_json(request))
        record, token = await runtime.delegations.create(
            user,
            actor=body.actor,
            scopes=wanted,
            audience=body.audience,
            expires_in=float(body.expires_in),
            label=body.label,
            may_delegate=body.may_delegate,
        )
        logger.info(
            "Delegation %s created by %s for actor %s", record.id, user_id, ascii(record.actor)
        )
        return _answer({"delegation": describe(record, now), "token": token}, 201)

    @router.get(
        "",
        response_model=DelegationList,
        responses=_responses(403),
        name="authbridge_list_delegations",
        operation_id="authbridge_list_delegations",
        summary="The delegations you handed out",
        description="Newest first, at most 100; the active ones unless `include_inactive`.",
    )
    async def list_delegations(
        request: Request,
        user: Principal = Security(bridge.direct_principal, scopes=scopes),
        include_inactive: bool = Query(
            False, description="Also list expired and revoked delegations."
        ),
    ) -> Response:
        user_id = await own_user(user, request, bridge.direct_principal)
        records = await runtime.delegations.list(user_id, include_inactive=include_inactive)
        now = runtime.clock()
        return _answer({"delegations": [describe(r, now) for r in records]})

    @router.delete(
        "/{delegation_id}",
        status_code=204,
        response_class=Response,
        responses=_responses(403, 404),
        name="authbridge_revoke_delegation",
        operation_id="authbridge_revoke_delegation",
        summary="Revoke a delegation",
        description=(
            "Ends the delegation and every token of it: its refresh tokens at once, its access "
            "tokens at once on routes that check revocation (`active_principal`), within their "
            "lifetime elsewhere."
        ),
    )
    async def revoke_delegation(
        request: Request,
        delegation_id: str,
        user: Principal = Security(bridge.direct_principal, scopes=scopes),
    ) -> Response:
        user_id = await own_user(user, request, bridge.direct_principal)
        if not _ID.fullmatch(delegation_id):
            raise _not_found()
        if not await runtime.delegations.revoke(user_id, delegation_id):
            # Already revoked or expired (then 204 again), or not the caller's: one
            # answer whether it exists or not, after the same store lookups.
            record = await runtime.store.delegations.get(delegation_id)
            if record is None or record.user_id != user_id:
                raise _not_found()
        else:
            logger.info("Delegation %s revoked by %s", delegation_id, user_id)
        return Response(status_code=204, headers=HEADERS)

    return router


def delegation_options(
    install: bool, scope: str | None, issuer: AppIssuer | None
) -> tuple[bool, str | None]:
    """``AuthBridge(delegations=..., delegations_scope=...)``: whether to install, and the scope.

    Raises:
        ConfigurationError: the scope is not one of the issuer's (or there is no issuer).
    """
    if scope is not None and (issuer is None or scope not in issuer.scopes):
        raise ConfigurationError(
            "unknown_delegations_scope",
            message=(
                f"AuthBridge(delegations_scope={scope!r}) must name a scope of "
                "issuer=AppIssuer(scopes=...): no token could hold it otherwise"
            ),
        )
    return install and issuer is not None, scope


def install_delegations(app: FastAPI, bridge: AuthBridge, endpoints: IssuerEndpoints) -> None:
    """Add the ``/me/delegations`` routes to ``app``."""
    app.include_router(delegation_router(bridge, endpoints))


def add_schemas(document: dict[str, Any]) -> None:
    """Put the models the routes read themselves in ``document``'s components (idempotent).

    Only when an operation refers to them (the routes are installed).
    """
    wanted = [m for m in SCHEMAS if _ref(m) in json.dumps(document.get("paths", {}))]
    if not wanted:
        return
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in wanted:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.setdefault(model.__name__, schema)


def _ref(model: type[BaseModel]) -> str:
    return f'"#/components/schemas/{model.__name__}"'
