"""Provider identities → local accounts (SECURITY-CASES §6 account linking), on real stores.

Each test runs on a SQLite file and on PostgreSQL; the races use two store
instances on one database and a first-login hook that takes real time, so
every contender reads "unknown identity" before any of them writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

import store_support
from authbridge.client import ExternalIdentity
from authbridge.client._accounts import AccountPolicy, Accounts, derive_username
from authbridge.errors import ConfigurationError, LoginError
from authbridge.store import IdentityRecord, SQLStore, UserRecord

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store = store_support.store
store_url = store_support.store_url

NOW = 1_900_000_000.0
GOOGLE = "https://accounts.google.com"
GITHUB = "https://github.com"
FACEBOOK = "https://www.facebook.com"
VICTIM = "victim@example.test"


def accounts_of(store: SQLStore, **policy: object) -> Accounts:
    return Accounts(
        store.users,
        store.identities,
        clock=lambda: NOW,
        policy=AccountPolicy(**policy),  # type: ignore[arg-type]
    )


def google(
    subject: str = "g-1", email: str | None = VICTIM, verified: bool = True
) -> ExternalIdentity:
    return ExternalIdentity(
        provider="google",
        issuer=GOOGLE,
        subject=subject,
        email=email,
        email_verified=verified,
        name="Vic Tim",
    )


def facebook(subject: str = "fb-1", email: str | None = VICTIM) -> ExternalIdentity:
    # Facebook gives no verified flag: its addresses are never verified for us.
    return ExternalIdentity(
        provider="facebook", issuer=FACEBOOK, subject=subject, email=email, email_verified=False
    )


def github(
    subject: str = "42", login: str = "octocat", email: str | None = None
) -> ExternalIdentity:
    return ExternalIdentity(
        provider="github",
        issuer=GITHUB,
        subject=subject,
        username=login,
        email=email,
        email_verified=email is not None,
    )


async def local(
    store: SQLStore, user_id: str, *, email: str | None = VICTIM, verified: bool, **changes: object
) -> UserRecord:
    fields: dict[str, object] = {
        "id": user_id,
        "username": user_id,
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        "email": email,
        "email_verified": verified,
    }
    fields.update(changes)
    return await store.users.add(UserRecord(**fields))  # type: ignore[arg-type]


async def everyone(store: SQLStore) -> list[UserRecord]:
    return list(await store.users.list(limit=1000))


@pytest.fixture
async def second(store_url: str, store: SQLStore) -> AsyncIterator[SQLStore]:
    """Another instance on the same database."""
    other = SQLStore(store_url, migrate=False, pool_size=20)
    await other.start()
    try:
        yield other
    finally:
        await other.aclose()


# --- first login and known identities ----------------------------------------------------------


async def test_first_login_creates_an_account_without_password(store: SQLStore) -> None:
    accounts = accounts_of(store, default_scopes=frozenset({"items:read"}))
    user = await accounts.resolve(google())
    assert user.password_hash is None
    assert user.username == "victim"
    assert user.scopes == frozenset({"items:read"})
    assert (user.email, user.email_verified, user.created_at) == (VICTIM, True, NOW)
    assert await store.users.get(user.id) == user
    link = await store.identities.find(GOOGLE, "g-1")
    assert link == IdentityRecord(GOOGLE, "g-1", user.id, VICTIM, True, NOW)
    # the next login finds it: no second account
    assert await accounts.resolve(google()) == user
    assert [u.id for u in await everyone(store)] == [user.id]


async def test_same_subject_at_another_issuer_is_another_person(store: SQLStore) -> None:
    accounts = accounts_of(store)
    first = await accounts.resolve(github(subject="7"))
    other = await accounts.resolve(replace(github(subject="7"), issuer="https://gitlab.com"))
    assert first.id != other.id


async def test_disabled_account_is_refused(store: SQLStore) -> None:
    accounts = accounts_of(store)
    user = await accounts.resolve(google())
    await store.users.update(replace(user, disabled=True))
    with pytest.raises(LoginError) as refused:
        await accounts.resolve(google())
    assert refused.value.reason == "account_disabled"
    assert refused.value.provider == "google"


async def test_creation_disabled_refuses_unknown_identities_only(store: SQLStore) -> None:
    accounts = accounts_of(store, create_accounts=False)
    with pytest.raises(LoginError) as refused:
        await accounts.resolve(google())
    assert refused.value.reason == "account_creation_disabled"
    assert await everyone(store) == []
    known = await local(store, "known", verified=False)
    await store.identities.link(IdentityRecord(GITHUB, "42", known.id))
    assert (await accounts.resolve(github())).id == "known"


async def test_first_login_hook_enriches_or_refuses(store: SQLStore) -> None:
    seen: list[tuple[ExternalIdentity, UserRecord]] = []

    async def hook(identity: ExternalIdentity, proposed: UserRecord) -> UserRecord | None:
        seen.append((identity, proposed))
        if identity.email is None or not identity.email.endswith("@example.test"):
            return None
        return replace(proposed, username="staff-" + proposed.username, scopes=frozenset({"a"}))

    accounts = accounts_of(store, on_first_login=hook)
    user = await accounts.resolve(google())
    assert (user.username, user.scopes) == ("staff-victim", frozenset({"a"}))
    assert seen[0][0] == google()
    assert seen[0][1].password_hash is None
    with pytest.raises(LoginError) as refused:
        await accounts.resolve(google("g-2", email="someone@elsewhere.test"))
    assert refused.value.reason == "account_refused"
    assert await store.identities.find(GOOGLE, "g-2") is None
    assert len(await everyone(store)) == 1
    await accounts.resolve(google())  # a known identity: the hook is not asked again
    assert len(seen) == 2


async def test_github_without_public_email(store: SQLStore) -> None:
    user = await accounts_of(store, link_by_email=True).resolve(github(email=None))
    assert user.username == "octocat"
    assert (user.email, user.email_verified) == (None, False)


async def test_derived_usernames_are_unique(store: SQLStore) -> None:
    await local(store, "octocat", email=None, verified=False)
    accounts = accounts_of(store)
    first = await accounts.resolve(github("1"))
    second = await accounts.resolve(github("2"))
    names = {"octocat", first.username, second.username}
    assert len(names) == 3
    assert all(name.startswith("octocat-") for name in names - {"octocat"})


def test_username_derivation() -> None:
    def named(**fields: object) -> str:
        return derive_username(ExternalIdentity("p", "https://i", "s", **fields))  # type: ignore[arg-type]

    assert named(username="Octo.Cat") == "octo.cat"
    assert named(username="Ｊｏｓé Ä") == "josé-ä"  # NFKC and case folding like stored names
    assert named(email="First.Last+tag@example.test") == "first.last-tag"
    assert named(name="  ../Ann  O'Neil\u202e ") == "ann-o-neil"
    assert named(username="***", email="@x", name="") == "user"
    assert named() == "user"
    assert len(named(username="x" * 100)) == 32


def test_policy_validates_default_scopes() -> None:
    assert AccountPolicy(default_scopes={"a", "b"}).default_scopes == frozenset({"a", "b"})  # type: ignore[arg-type]
    for bad in ("items:read", frozenset({"two words"}), frozenset({""})):
        with pytest.raises(ConfigurationError) as refused:
            AccountPolicy(default_scopes=bad)  # type: ignore[arg-type]
        assert refused.value.reason == "invalid_default_scopes"


# --- linking by email (pre-account takeover) ---------------------------------------------------


async def test_link_by_email_needs_verified_addresses_on_both_sides(store: SQLStore) -> None:
    owner = await local(store, "owner", verified=True)
    user = await accounts_of(store, link_by_email=True).resolve(google())
    assert user.id == "owner"
    assert user == owner
    link = await store.identities.find(GOOGLE, "g-1")
    assert link is not None
    assert link.user_id == "owner"


async def test_link_by_email_is_off_by_default(store: SQLStore) -> None:
    await local(store, "owner", verified=True)
    user = await accounts_of(store).resolve(google())
    assert user.id != "owner"
    assert await store.identities.for_user("owner") == []


async def test_pre_account_takeover_attacker_registers_the_email_first(store: SQLStore) -> None:
    """The attacker creates a local account with the victim's address (unverified) and a
    password of their own; the victim's first Google login must not land in it."""
    attacker = await local(store, "attacker", verified=False)
    victim = await accounts_of(store, link_by_email=True).resolve(google())
    assert victim.id != attacker.id
    assert victim.password_hash is None
    assert await store.identities.for_user(attacker.id) == []
    link = await store.identities.find(GOOGLE, "g-1")
    assert link is not None
    assert link.user_id == victim.id


async def test_unverified_provider_email_never_links(store: SQLStore) -> None:
    """Verified locally, unverified at the provider (Facebook has no verified flag; an
    attacker can put any address on a Facebook account)."""
    owner = await local(store, "owner", verified=True)
    accounts = accounts_of(store, link_by_email=True)
    via_facebook = await accounts.resolve(facebook())
    assert via_facebook.id != owner.id
    assert via_facebook.email_verified is False
    # GitHub-like: an address given but not verified
    unverified = replace(github("9", email=VICTIM), email_verified=False)
    assert (await accounts.resolve(unverified)).id not in {owner.id, via_facebook.id}
    assert await store.identities.for_user(owner.id) == []


async def test_account_created_from_an_unverified_address_is_never_a_link_target(
    store: SQLStore,
) -> None:
    """An attacker's Facebook account carrying the victim's address creates an account whose
    address is unverified: the victim's later Google login does not land in it."""
    accounts = accounts_of(store, link_by_email=True)
    attacker = await accounts.resolve(facebook())
    victim = await accounts.resolve(google())
    assert victim.id != attacker.id


async def test_ambiguous_email_never_links(store: SQLStore) -> None:
    await local(store, "one", verified=True)
    await local(store, "two", verified=True)
    user = await accounts_of(store, link_by_email=True).resolve(google())
    assert user.id not in {"one", "two"}


async def test_email_is_matched_exactly(store: SQLStore) -> None:
    await local(store, "owner", email="Victim@Example.test", verified=True)
    user = await accounts_of(store, link_by_email=True).resolve(google())
    assert user.id != "owner"


async def test_email_of_a_disabled_account_refuses(store: SQLStore) -> None:
    await local(store, "banned", verified=True, disabled=True)
    with pytest.raises(LoginError) as refused:
        await accounts_of(store, link_by_email=True).resolve(google())
    assert refused.value.reason == "account_disabled"
    assert [u.id for u in await everyone(store)] == ["banned"]
    assert await store.identities.find(GOOGLE, "g-1") is None


# --- explicit link, unlink ---------------------------------------------------------------------


async def test_explicit_link_and_identities(store: SQLStore) -> None:
    accounts = accounts_of(store)
    owner = await local(store, "owner", email=None, verified=False)
    record = await accounts.link(owner.id, github())
    assert record == IdentityRecord(GITHUB, "42", "owner", None, False, NOW)
    assert await accounts.link(owner.id, github()) == record  # again: nothing changes
    await accounts.link(owner.id, google())
    assert [i.issuer for i in await accounts.identities(owner.id)] == [GOOGLE, GITHUB]
    assert (await accounts.resolve(github())).id == "owner"


async def test_link_refuses_an_identity_of_another_account(store: SQLStore) -> None:
    accounts = accounts_of(store)
    someone = await accounts.resolve(github())
    owner = await local(store, "owner", verified=False)
    with pytest.raises(LoginError) as refused:
        await accounts.link(owner.id, github())
    assert refused.value.reason == "identity_linked_elsewhere"
    assert (await accounts.resolve(github())).id == someone.id


async def test_link_to_a_missing_or_disabled_account(store: SQLStore) -> None:
    accounts = accounts_of(store)
    with pytest.raises(LoginError) as missing:
        await accounts.link("ghost", github())
    assert missing.value.reason == "account_missing"
    await local(store, "off", verified=False, disabled=True)
    with pytest.raises(LoginError) as disabled:
        await accounts.link("off", github())
    assert disabled.value.reason == "account_disabled"
    assert await store.identities.find(GITHUB, "42") is None


async def test_unlink_never_removes_the_last_way_in(store: SQLStore) -> None:
    accounts = accounts_of(store)
    user = await accounts.resolve(github())  # no password
    await accounts.link(user.id, google())
    assert await accounts.unlink(user.id, GOOGLE, "g-1") is True
    with pytest.raises(LoginError) as refused:
        await accounts.unlink(user.id, GITHUB, "42")
    assert refused.value.reason == "last_login_method"
    assert [i.issuer for i in await accounts.identities(user.id)] == [GITHUB]
    assert await accounts.unlink(user.id, GOOGLE, "g-1") is False  # not linked any more
    other = await accounts.resolve(facebook())
    assert await accounts.unlink(other.id, GITHUB, "42") is False  # not this account's
    # an account with a password may drop its only identity
    await store.users.set_password_hash(user.id, "$argon2id$x")
    assert await accounts.unlink(user.id, GITHUB, "42") is True


# --- races -------------------------------------------------------------------------------------


def slow_hook(delay: float = 0.05) -> object:
    async def hook(identity: ExternalIdentity, proposed: UserRecord) -> UserRecord:
        await asyncio.sleep(delay)  # every contender is past the lookup before anyone writes
        return proposed

    return hook


async def test_concurrent_first_logins_create_one_account(
    store: SQLStore, second: SQLStore
) -> None:
    instances = [accounts_of(s, on_first_login=slow_hook()) for s in (store, second)]
    users = await asyncio.gather(*(instances[i % 2].resolve(google()) for i in range(20)))
    assert len({user.id for user in users}) == 1
    assert [u.id for u in await everyone(store)] == [users[0].id]
    assert len(await store.identities.for_user(users[0].id)) == 1


async def test_concurrent_first_logins_linking_by_email_link_once(
    store: SQLStore, second: SQLStore
) -> None:
    await local(store, "owner", verified=True)
    instances = [accounts_of(s, link_by_email=True) for s in (store, second)]
    users = await asyncio.gather(*(instances[i % 2].resolve(google()) for i in range(20)))
    assert {user.id for user in users} == {"owner"}
    assert [u.id for u in await everyone(store)] == ["owner"]
    assert len(await store.identities.for_user("owner")) == 1


async def test_concurrent_first_logins_of_people_with_one_name(
    store: SQLStore, second: SQLStore
) -> None:
    instances = [accounts_of(s, on_first_login=slow_hook(0.02)) for s in (store, second)]
    users = await asyncio.gather(*(instances[i % 2].resolve(github(str(i))) for i in range(20)))
    assert len({user.id for user in users}) == 20
    assert len({user.username for user in users}) == 20
    assert sum(user.username == "octocat" for user in users) == 1
    assert len(await everyone(store)) == 20
