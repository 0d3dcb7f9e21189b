"""The store: users, identities, sessions, clients, refresh families, signing keys,
delegations and short-lived shared state, behind typed async protocols.

`open_store` turns a URL into a backend: ``sqlite+aiosqlite:///authbridge.db``
(the embedded default: a file, no server) or
``postgresql+asyncpg://user@host/db`` (production; ``pip install
authbridge[postgres]``). The schema is created and upgraded by the migrations
shipped in the package (``authbridge db upgrade``), recorded in their own
version table, ``authbridge_alembic_version``, so they coexist with the app's
own Alembic migrations.
"""

from __future__ import annotations

from ..errors import StoreUnavailable
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
from ._sql import DEFAULT_STORE_URL, SQLStore, open_store

__all__ = [
    "DEFAULT_STORE_URL",
    "ClientAuthMethod",
    "ClientRecord",
    "ClientStore",
    "Conflict",
    "DelegationRecord",
    "DelegationStore",
    "IdentityRecord",
    "IdentityStore",
    "OneTimeStore",
    "RateLimitStore",
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
