"""FastAPI integration: the only part of authbridge that imports FastAPI/Starlette."""

from ._bridge import AuthBridge
from ._security import OptionalPrincipalDependency, PrincipalDependency

__all__ = ["AuthBridge", "OptionalPrincipalDependency", "PrincipalDependency"]
