"""FastAPI integration: the only part of authbridge that imports FastAPI/Starlette."""

from ..issuer import AppIssuer
from ._bridge import AuthBridge
from ._bridge_checks import SwaggerLogin
from ._docs import swagger_ui_router
from ._security import (
    ActivePrincipalDependency,
    OptionalPrincipalDependency,
    PrincipalDependency,
)

__all__ = [
    "ActivePrincipalDependency",
    "AppIssuer",
    "AuthBridge",
    "OptionalPrincipalDependency",
    "PrincipalDependency",
    "SwaggerLogin",
    "swagger_ui_router",
]
