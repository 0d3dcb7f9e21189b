"""The public surface is exactly what we mean to export."""

from __future__ import annotations

import ast
from pathlib import Path

import authbridge
import authbridge.fastapi
import authbridge.testing


def test_top_level_exports() -> None:
    assert authbridge.__all__ == sorted(authbridge.__all__)
    assert set(authbridge.__all__) == {
        "AccountPolicy",
        "AppIssuer",
        "AppleProvider",
        "Auth0Provider",
        "AuthBridge",
        "AuthBridgeError",
        "AuthBridgeSettings",
        "CognitoProvider",
        "ConfigurationError",
        "EntraProvider",
        "ExternalIdentity",
        "FacebookProvider",
        "GitHubProvider",
        "GitLabProvider",
        "GoogleProvider",
        "InsufficientScope",
        "Introspection",
        "InvalidToken",
        "KeycloakProvider",
        "LoginError",
        "LoginSettings",
        "MissingToken",
        "OIDCProvider",
        "OktaProvider",
        "Principal",
        "ProviderUnavailable",
        "ResourceServer",
        "SwaggerLogin",
        "UserinfoProvider",
        "__version__",
        "roles",
    }
    for name in authbridge.__all__:
        assert hasattr(authbridge, name), name


def test_public_names_live_in_the_package() -> None:
    for name in authbridge.__all__:
        if name == "__version__":
            continue
        value = getattr(authbridge, name)
        module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
        assert str(module).startswith("authbridge"), name


def test_testing_kit_exports() -> None:
    assert set(authbridge.testing.__all__) == {
        "AuthOverride",
        "BadTokens",
        "FakeAPI",
        "FakeApple",
        "FakeFacebook",
        "FakeGitHub",
        "FakeGoogle",
        "FakeIssuer",
        "FakeUserinfo",
        "RecordedRequest",
        "ServedFakeIssuer",
        "combined_transport",
        "override_auth",
        "sign_jwt",
    }


def test_errors_share_one_root() -> None:
    for name in ("ConfigurationError", "InsufficientScope", "InvalidToken", "MissingToken"):
        assert issubclass(getattr(authbridge, name), authbridge.AuthBridgeError)
    assert issubclass(authbridge.ProviderUnavailable, authbridge.AuthBridgeError)


def test_core_does_not_import_fastapi() -> None:
    root = Path(authbridge.__file__).parent
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(("fastapi/", "_demo.py", "__init__.py", "cli.py")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not name.startswith(("fastapi", "starlette")), f"{relative} imports {name}"
