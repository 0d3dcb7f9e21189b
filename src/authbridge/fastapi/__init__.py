"""FastAPI integration: the only part of authbridge that imports FastAPI/Starlette."""

from ..issuer import AppIssuer
from ._bridge import AuthBridge
from ._bridge_checks import SwaggerLogin
from ._docs import swagger_ui_router
from ._health import Health, install_health
from ._security import (
    ActivePrincipalDependency,
    DirectPrincipalDependency,
    OptionalPrincipalDependency,
    PrincipalDependency,
)

__all__ = [
    "ActivePrincipalDependency",
    "AppIssuer",
    "AuthBridge",
    "DirectPrincipalDependency",
    "Health",
    "OptionalPrincipalDependency",
    "PrincipalDependency",
    "SwaggerLogin",
    "install_health",
    "swagger_ui_router",
]
