"""The store: users, identities, sessions, clients, refresh families, signing keys,
delegations and short-lived shared state, behind typed async protocols.

`open_store` turns a URL into a backend: ``sqlite+aiosqlite:///authbridge.db``
(the embedded default: a file, no server) or
``postgresql+asyncpg://user@host/db`` (production; ``pip install
authbridge[postgres]``). The schema is created and upgraded by the migrations
shipped in the package (``authbridge db upgrade``), recorded in their own
version table, ``authbridge_alembic_version``, so they coexist with the app's
own Alembic migrations. With ``open_store(url, redis="redis://...")``, a
[CompositeStore][authbridge.store.CompositeStore] keeps the short-lived shared
state (login transactions, codes, rate-limit windows, replay records) in Redis
for several instances (``pip install 'authbridge[redis]'``).
"""

from __future__ import annotations

from ..errors import StoreUnavailable
from ._composite import CompositeStore, open_store
from ._protocols import (
    ClientStore,
    DelegationStore,
    IdentityStore,
    OneTimeStore,
    RateLimitStore,
    RefreshStore,
    ReplayStore,
    SessionStore,
    SigningKeyStore,
    Store,
    UnlinkOutcome,
    UserDirectory,
    UserStore,
)
from ._records import (
    ClientAuthMethod,
    ClientRecord,
    Conflict,
    DelegationRecord,
    IdentityRecord,
    RefreshFamily,
    RefreshTokenRecord,
    SessionRecord,
    SigningKeyRecord,
    UserRecord,
)
from ._redis import RedisEphemeral
from ._sql import DEFAULT_STORE_URL, SQLStore

__all__ = [
    "DEFAULT_STORE_URL",
    "ClientAuthMethod",
    "ClientRecord",
    "ClientStore",
    "CompositeStore",
    "Conflict",
    "DelegationRecord",
    "DelegationStore",
    "IdentityRecord",
    "IdentityStore",
    "OneTimeStore",
    "RateLimitStore",
    "RedisEphemeral",
    "RefreshFamily",
    "RefreshStore",
    "RefreshTokenRecord",
    "ReplayStore",
    "SQLStore",
    "SessionRecord",
    "SessionStore",
    "SigningKeyRecord",
    "SigningKeyStore",
    "Store",
    "StoreUnavailable",
    "UnlinkOutcome",
    "UserDirectory",
    "UserRecord",
    "UserStore",
    "open_store",
]
