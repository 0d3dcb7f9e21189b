"""Provider identities → local accounts: find, link, create, unlink.

An identity is keyed by (issuer, subject), never by email or login name: the
same person logging in through GitHub and Google is two identities, which
may be linked to one account. Linking by email is off by default; when on,
it links only a verified provider address to the one local account that has
that address verified (the pre-account-takeover attack: someone registers the
victim's address first, unverified, and waits). Everything else creates a
new, separate account with no password.

Races are decided by the store: an account is created together with its
first identity in one transaction (`IdentityStore.link_new_user`), so of
concurrent first logins of one identity exactly one creates an account and
the others read its link; an unlink that would remove an account's last way
in is refused atomically (`IdentityStore.unlink_from`).
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from .._clock import Clock
from ..errors import ConfigurationError, LoginError
from ..store import Conflict, IdentityRecord, IdentityStore, UserRecord, UserStore
from ._base import ExternalIdentity

FirstLoginHook = Callable[[ExternalIdentity, UserRecord], Awaitable[UserRecord | None]]
"""``on_first_login(identity, proposed)``: the account to create, or ``None`` to refuse."""

MAX_DERIVED_USERNAME = 32
"""Longest username derived from an identity (a suffix is added when it is taken)."""

USERNAME_ATTEMPTS = 6
"""Usernames tried for a new account before giving up (the later ones carry random suffixes)."""

_USERNAME_PUNCTUATION = "._-"

__all__ = ["AccountPolicy", "Accounts", "FirstLoginHook", "derive_username"]


@dataclass(frozen=True)
class AccountPolicy:
    """How provider identities become local accounts.

    Attributes:
        create_accounts: Create an account for an identity seen for the first
            time. ``False``: only identities already linked (by an
            administrator, or by an explicit link from a logged-in account) log
            in; the others are refused with ``account_creation_disabled``.
        link_by_email: Link an identity seen for the first time to an existing
            account when the provider says its email is verified **and**
            exactly one local account has that address verified. Off by
            default; an unverified address (Facebook's, GitHub's non-primary
            ones) never links.
        on_first_login: Called with the identity and the proposed account
            before a new account is created: return it (changed as you like:
            username, scopes, email) to create it, or ``None`` to refuse the
            login (``account_refused``). Not called for known identities or links.
        default_scopes: Scopes a new account gets.

    Raises:
        ConfigurationError: a default scope that is empty or holds whitespace.

    Example:
        ```python
        async def only_staff(identity, proposed):
            if not (identity.email_verified and identity.email.endswith("@example.org")):
                return None
            return replace(proposed, scopes=frozenset({"items:read"}))

        AccountPolicy(on_first_login=only_staff)
        ```
    """

    create_accounts: bool = True
    link_by_email: bool = False
    on_first_login: FirstLoginHook | None = None
    default_scopes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        scopes: object = self.default_scopes
        valid = isinstance(scopes, set | frozenset | list | tuple) and all(
            isinstance(scope, str) and scope and not any(c.isspace() for c in scope)
            for scope in scopes
        )
        if not valid:
            raise ConfigurationError(
                "invalid_default_scopes",
                message="AccountPolicy(default_scopes=...) is a set of scope names without "
                "whitespace, e.g. frozenset({'items:read'})",
            )
        # frozen: a set or list given is kept as a frozenset
        object.__setattr__(self, "default_scopes", frozenset(self.default_scopes))


def derive_username(identity: ExternalIdentity) -> str:
    """A username for a new account: the provider's login name, else the email's local part,
    else the display name, else ``user``.

    Normalised like stored usernames (NFKC, case-folded), letters, digits and
    ``. _ -`` only, at most `MAX_DERIVED_USERNAME` characters. A hint, never
    a key: it may be taken, and then a suffix is added.
    """
    email_name = identity.email.partition("@")[0] if identity.email else None
    for source in (identity.username, email_name, identity.name):
        if source:
            name = _clean(source)
            if name:
                return name
    return "user"


def _clean(text: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    kept = "".join(
        c if (c.isalnum() and c.isprintable()) or c in _USERNAME_PUNCTUATION else "-"
        for c in folded
    )
    while "--" in kept:
        kept = kept.replace("--", "-")
    return kept.strip(_USERNAME_PUNCTUATION)[:MAX_DERIVED_USERNAME].strip(_USERNAME_PUNCTUATION)


def _candidate(base: str, attempt: int) -> str:
    if attempt == 0:
        return base
    suffix = secrets.token_hex(3)
    return f"{base[: MAX_DERIVED_USERNAME - len(suffix) - 1]}-{suffix}"


class Accounts:
    """Maps provider identities to local accounts.

    The rules are an [AccountPolicy][authbridge.client.AccountPolicy].

    Args:
        users: The account table.
        identities: The identity links.
        clock: The current time (for ``created_at``).
        policy: Creation and linking rules.

    Example:
        ```python
        accounts = Accounts(store.users, store.identities, clock=time.time,
                            policy=AccountPolicy())
        user = await accounts.resolve(outcome.identity)
        ```
    """

    def __init__(
        self, users: UserStore, identities: IdentityStore, *, clock: Clock, policy: AccountPolicy
    ) -> None:
        self._users = users
        self._identities = identities
        self._clock = clock
        self.policy = policy

    def __repr__(self) -> str:
        return f"Accounts(policy={self.policy!r})"

    async def resolve(self, identity: ExternalIdentity) -> UserRecord:
        """The account of a person who logged in (or exchanged a token) at a provider.

        Raises:
            LoginError: ``account_disabled``, ``account_creation_disabled``,
                ``account_refused`` (the first-login hook said no),
                ``account_missing`` (the account was deleted meanwhile).
            StoreUnavailable: the store is down.
        """
        found = await self._identities.find(identity.issuer, identity.subject)
        if found is not None:
            return await self._account_of(found, identity)
        if self.policy.link_by_email:
            target = await self._verified_email_match(identity)
            if target is not None:
                return await self._link_first(target, identity)
        return await self._create(identity)

    async def link(self, user_id: str, identity: ExternalIdentity) -> IdentityRecord:
        """Link an identity to a logged-in account (the person asked for it).

        Linking an identity already linked to this account changes nothing.

        Raises:
            LoginError: ``identity_linked_elsewhere`` (linked to another
                account: unlink it there first), ``account_disabled``,
                ``account_missing``.
            StoreUnavailable: the store is down.
        """
        user = await self._users.get(user_id)
        if user is None:
            raise LoginError("account_missing", provider=identity.provider)
        if user.disabled:
            raise LoginError("account_disabled", provider=identity.provider)
        record = self._record(identity, user_id)
        try:
            await self._identities.link(record)
        except Conflict:
            found = await self._identities.find(identity.issuer, identity.subject)
            if found is None or found.user_id != user_id:
                raise LoginError("identity_linked_elsewhere", provider=identity.provider) from None
            return found
        except KeyError:  # deleted since it was read
            raise LoginError("account_missing", provider=identity.provider) from None
        return record

    async def unlink(self, user_id: str, issuer: str, subject: str) -> bool:
        """Remove one identity from an account; whether it was linked to it.

        Raises:
            LoginError: ``last_login_method``: the account has no password and
                no other identity, so it could never log in again.
            StoreUnavailable: the store is down.
        """
        outcome = await self._identities.unlink_from(user_id, issuer, subject)
        if outcome == "last_login_method":
            raise LoginError("last_login_method")
        return outcome == "unlinked"

    async def identities(self, user_id: str) -> Sequence[IdentityRecord]:
        """Every identity linked to an account."""
        return await self._identities.for_user(user_id)

    # --- steps ---------------------------------------------------------------------------------

    def _record(self, identity: ExternalIdentity, user_id: str) -> IdentityRecord:
        return IdentityRecord(
            issuer=identity.issuer,
            subject=identity.subject,
            user_id=user_id,
            email=identity.email,
            email_verified=identity.email_verified,
            created_at=self._clock(),
        )

    async def _account_of(self, link: IdentityRecord, identity: ExternalIdentity) -> UserRecord:
        user = await self._users.get(link.user_id)
        if user is None:
            raise LoginError("account_missing", provider=identity.provider)
        if user.disabled:
            raise LoginError("account_disabled", provider=identity.provider)
        return user

    async def _verified_email_match(self, identity: ExternalIdentity) -> UserRecord | None:
        """The one account with this verified address, when the provider verified it too."""
        if identity.email_verified is not True or not identity.email:
            return None
        candidates = await self._users.by_email(identity.email, verified=True, limit=2)
        if len(candidates) != 1 or not candidates[0].email_verified:
            return None  # none, or ambiguous: never guess
        return candidates[0]

    async def _link_first(self, target: UserRecord, identity: ExternalIdentity) -> UserRecord:
        if target.disabled:  # never a fresh account beside a disabled one with this address
            raise LoginError("account_disabled", provider=identity.provider)
        try:
            await self._identities.link(self._record(identity, target.id))
        except Conflict:  # a concurrent first login linked it: use its link
            return await self._winner(identity)
        except KeyError:
            raise LoginError("account_missing", provider=identity.provider) from None
        return target

    async def _winner(self, identity: ExternalIdentity) -> UserRecord:
        found = await self._identities.find(identity.issuer, identity.subject)
        if found is None:  # pragma: no cover - a conflict on the key means it exists
            raise LoginError("account_missing", provider=identity.provider)
        return await self._account_of(found, identity)

    async def _create(self, identity: ExternalIdentity) -> UserRecord:
        if not self.policy.create_accounts:
            raise LoginError("account_creation_disabled", provider=identity.provider)
        proposed = UserRecord(
            id=secrets.token_urlsafe(16),
            username=derive_username(identity),
            password_hash=None,
            scopes=self.policy.default_scopes,
            email=identity.email,
            email_verified=identity.email_verified is True and identity.email is not None,
            created_at=self._clock(),
        )
        hook = self.policy.on_first_login
        if hook is not None:
            enriched = await hook(identity, proposed)
            if enriched is None:
                raise LoginError("account_refused", provider=identity.provider)
            proposed = enriched
        base = proposed.username or "user"
        for attempt in range(USERNAME_ATTEMPTS):
            user = replace(proposed, username=_candidate(base, attempt))
            try:
                await self._identities.link_new_user(user, self._record(identity, user.id))
            except Conflict:
                # Either a concurrent first login of this identity won (use its
                # account), or the username is taken (try another).
                found = await self._identities.find(identity.issuer, identity.subject)
                if found is not None:
                    return await self._account_of(found, identity)
                continue
            return user
        raise LoginError("username_unavailable", provider=identity.provider)
