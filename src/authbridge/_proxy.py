"""Which HTTP proxy, if any, each outbound request goes through.

Two sources, never mixed:

- explicit: ``proxy="http://proxy.corp:3128"`` sends every request through that proxy;
- the environment (``trust_env``, the default): ``HTTPS_PROXY`` for https URLs,
  ``HTTP_PROXY`` for http URLs, ``ALL_PROXY`` for either when the specific one is unset.
  Lower-case spellings win over upper-case ones and an empty lower-case one unsets the
  variable (as `urllib` and curl read them). ``NO_PROXY`` lists hosts reached directly.
  Hosts of this machine (``localhost``, ``*.localhost``, 127.0.0.0/8, ::1, and 0.0.0.0 and
  ``::``, which connect here) are always reached directly, as Go's ``net/http`` does: a
  proxy cannot reach this machine's loopback, and a development provider on
  ``http://localhost`` would otherwise hand its client secret to the proxy in clear text.
  An address counts in every spelling the system resolver reads: ``127.1``,
  ``2130706433``, ``0x7f.1`` and ``0177.0.0.1`` are all 127.0.0.1 to it (``inet_aton``'s
  forms, which `ipaddress` does not read; httpx hands such hosts to the resolver).

A proxy URL may carry credentials (``http://user:password@proxy:3128``); they are sent to
the proxy only (``Proxy-Authorization``) and never appear in a log line or an error:
everything shown is `ProxyURL.shown`.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from ._httpx import pool_limits
from .errors import ConfigurationError

__all__ = [
    "DIRECT",
    "NoProxy",
    "ProxyRouter",
    "ProxyRoutes",
    "ProxyURL",
    "is_loopback",
    "parse_proxy_url",
    "proxy_routes",
]

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A validated proxy URL: ``url`` (with any credentials) is for the client only."""

    url: str = field(repr=False)
    shown: str
    """The URL without credentials (``http://***@proxy:3128``): safe to log."""
    source: str
    """Where it came from: ``proxy=`` or the environment variable's name."""


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_proxy_url(value: str, *, source: str) -> ProxyURL:
    """Validate a proxy URL (``host:port`` alone means ``http://host:port``).

    Raises:
        ConfigurationError: not an ``http://`` or ``https://`` URL with a host and
            nothing after the port. The message never repeats credentials: when the
            value holds an ``@`` anywhere, it shows no part of the value at all.
    """
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"
    # A password with an unencoded "#", "?", "/" or "@" splits the URL inside the
    # credentials: what looks like the scheme, host or port may then be part of them.
    # With an "@" anywhere, nothing of the value is shown, only where it came from.
    secret = "@" in text
    expected = "expected http://host:port or https://host:port"
    encode = (
        ". In a user name or password, percent-encode @ # ? / (as %40 %23 %3F %2F)"
        if secret
        else ""
    )
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError:
        # Nothing of the value is shown: it may hold a password.
        raise ConfigurationError(
            "invalid_proxy_url",
            message=f"{source} is not a valid proxy URL ({expected}){encode}",
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        used = "an unsupported scheme" if secret else f"{scheme}://"
        raise ConfigurationError(
            "unsupported_proxy_scheme",
            message=(
                f"{source} uses {used}; authbridge supports http:// and https:// proxies "
                "(for the environment variable: unset it for this process, or pass "
                f"trust_env=False){encode}"
            ),
        )
    credentials = "***@" if "@" in parts.netloc else ""
    shown = f"{scheme}://{credentials}{_host_text(host or '')}" + (
        f":{port}" if port is not None else ""
    )
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        where = source if secret else f"{source}={shown}"
        raise ConfigurationError(
            "invalid_proxy_url",
            message=f"{where} is not a valid proxy URL ({expected}, no path){encode}",
        )
    # Valid, so every character up to the last "@" is in the netloc: `shown` replaced it.
    return ProxyURL(url=text, shown=shown, source=source)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


_INET_ATON_CHARACTERS = frozenset("0123456789abcdefx.")


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C resolver reads in ``host`` (lower case), by ``inet_aton``.

    Decimal, octal (leading ``0``) and hexadecimal (``0x``) parts, and the short forms
    (``a.b.c`` / ``a.b`` / ``a``, the last part filling the remaining bytes): what
    ``getaddrinfo`` accepts as a numeric host, and what `ipaddress` refuses.
    """
    # inet_aton stops at whitespace (glibc) and getaddrinfo does not: only the
    # characters of a number, so that both read the same host.
    if not host or not _INET_ATON_CHARACTERS.issuperset(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` (normalised) connects to when it is a numeric host, else ``None``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _numeric_ipv4(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, a ``.localhost`` name (RFC 6761), a
    loopback address or the unspecified address (0.0.0.0, ``::``: a connection to it
    reaches this machine), in any numeric spelling the resolver accepts (``127.1``,
    ``0x7f.1``, ``2130706433``)."""
    name = _normal_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = _ip(name)
    return address is not None and (address.is_loopback or address.is_unspecified)


@dataclass(frozen=True, slots=True)
class NoProxy:
    """The hosts ``NO_PROXY`` sends directly (curl's rules, as most clients read them).

    Comma-separated entries: ``*`` (every host); a domain (``example.com``, ``.example.com``
    or ``*.example.com``: the domain and every subdomain, never ``badexample.com``); an IP
    address or CIDR network (matched against numeric hosts only, in every spelling the
    resolver reads as an address, ``10.1`` being 10.0.0.1: no name is resolved to decide);
    any of these with ``:port`` to match one port only. Case-insensitive; unusable entries
    are ignored, as curl and Go ignore them.
    """

    everything: bool = False
    domains: frozenset[tuple[str, int | None]] = frozenset()
    networks: tuple[tuple[_IPNetwork, int | None], ...] = ()

    @classmethod
    def parse(cls, value: str) -> NoProxy:
        """Read a ``NO_PROXY`` value."""
        domains: set[tuple[str, int | None]] = set()
        networks: list[tuple[_IPNetwork, int | None]] = []
        for raw in value.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(everything=True)
            host, port = _split_port(entry)
            network = _network(host.strip("[]"))
            if network is not None:
                networks.append((network, port))
                continue
            name = host.lstrip("*").lstrip(".").rstrip(".")
            if name and "/" not in name and "*" not in name and "[" not in name:
                domains.add((name, port))
        return cls(domains=frozenset(domains), networks=tuple(networks))

    def matches(self, host: str, port: int) -> bool:
        """Whether ``host:port`` is to be reached directly."""
        if self.everything:
            return True
        name = _normal_host(host)
        address = _ip(name)
        if address is not None:
            return any(
                address.version == network.version and address in network and wanted in (None, port)
                for network, wanted in self.networks
            )
        return any(
            (name == domain or name.endswith(f".{domain}")) and wanted in (None, port)
            for domain, wanted in self.domains
        )

    @property
    def entries(self) -> int:
        """How many usable entries it has (for the start-up log line)."""
        return len(self.domains) + len(self.networks) + int(self.everything)


def _network(text: str) -> _IPNetwork | None:
    """A ``NO_PROXY`` address or CIDR entry; numeric IPv4 spellings read as the resolver does."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        address = _numeric_ipv4(text)
    return None if address is None else ipaddress.ip_network(address)


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` / ``[v6]:port`` / ``v4:port`` → (host, port); a bare IPv6 keeps its colons."""
    if entry.startswith("["):
        host, _, rest = entry.partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host + "]", int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


@dataclass(frozen=True, slots=True)
class ProxyRoutes:
    """The proxy of each URL scheme, and the hosts that bypass it.

    ``bypass`` is ``None`` for an explicit proxy (it applies to every request), else the
    environment's ``NO_PROXY`` (loopback hosts are added to it implicitly).
    """

    by_scheme: Mapping[str, ProxyURL] = field(default_factory=dict)
    bypass: NoProxy | None = None

    def __bool__(self) -> bool:
        return bool(self.by_scheme)

    def proxy_for(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        """The proxy a request to ``scheme://host:port`` goes through, or ``None`` (direct)."""
        proxy = self.by_scheme.get(scheme)
        if proxy is None or self.bypass is None:
            return proxy
        if is_loopback(host) or self.bypass.matches(host, port):
            return None
        return proxy

    def describe(self) -> str:
        """One safe-to-log sentence (no credentials)."""
        schemes: dict[tuple[str, str], list[str]] = {}
        for scheme, proxy in sorted(self.by_scheme.items()):
            schemes.setdefault((proxy.shown, proxy.source), []).append(scheme)
        text = "; ".join(
            f"{' and '.join(names)} URLs through {shown} ({source})"
            for (shown, source), names in schemes.items()
        )
        text = text or "no proxy"
        if self.bypass is not None:
            text += (
                "; directly: loopback hosts"
                + (" and every NO_PROXY host" if self.bypass.everything else "")
                + (f" and {self.bypass.entries} NO_PROXY entries" if self.bypass.entries else "")
            )
        return text


DIRECT = ProxyRoutes()
"""No proxy: every request goes directly."""


def _variable(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    lower = f"{name}_proxy"
    if lower in environ:
        value = environ[lower].strip()
        return (lower, value) if value else None
    upper = lower.upper()
    if upper == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
        # Under CGI, HTTP_PROXY can come from a client's "Proxy:" header (httpoxy,
        # CVE-2016-5385); urllib ignores it there too.
        return None
    value = environ.get(upper, "").strip()
    return (upper, value) if value else None


def proxy_routes(proxy: str | None, environ: Mapping[str, str]) -> ProxyRoutes:
    """The routes for an explicit ``proxy``, else for the proxy variables in ``environ``.

    Raises:
        ConfigurationError: a proxy URL that is not an http(s) URL with a host.
    """
    if proxy is not None:
        if not isinstance(proxy, str) or not proxy.strip():
            raise ConfigurationError(
                "invalid_proxy_url",
                message="proxy must be a URL such as 'http://proxy.example.org:3128'",
            )
        explicit = parse_proxy_url(proxy, source="proxy=")
        return ProxyRoutes({"http": explicit, "https": explicit})
    found = {name: _variable(environ, name) for name in ("https", "http", "all")}
    fallback = found["all"]
    by_scheme: dict[str, ProxyURL] = {}
    for scheme in ("https", "http"):
        variable = found[scheme] or fallback
        if variable is not None:
            source, value = variable
            by_scheme[scheme] = parse_proxy_url(value, source=source)
    if not by_scheme:
        return DIRECT
    no_proxy = _variable(environ, "no")
    return ProxyRoutes(by_scheme, NoProxy.parse(no_proxy[1] if no_proxy else ""))


class ProxyRouter:
    """A transport sending each request through the proxy its URL calls for, or directly.

    Duck-typed rather than derived from one library's base class: the clients of httpx
    and httpx2 call only these methods, so one class serves both.
    """

    def __init__(self, direct: Any, proxied: Mapping[str, Any], routes: ProxyRoutes) -> None:
        self._direct = direct
        self._proxied = dict(proxied)
        self._routes = routes
        self._all = list({id(t): t for t in (direct, *self._proxied.values())}.values())

    @classmethod
    def build(
        cls, library: ModuleType, direct: Any, routes: ProxyRoutes, context: ssl.SSLContext
    ) -> ProxyRouter:
        """One pooled transport of ``library`` per distinct proxy URL, plus ``direct``."""
        by_url: dict[str, Any] = {}
        proxied: dict[str, Any] = {}
        for scheme, proxy in routes.by_scheme.items():
            if proxy.url not in by_url:
                # The context also verifies an https:// proxy's own certificate (the
                # libraries refuse one for an http:// proxy).
                tls = context if proxy.url.startswith("https://") else None
                by_url[proxy.url] = library.AsyncHTTPTransport(
                    verify=context,
                    trust_env=False,
                    proxy=library.Proxy(proxy.url, ssl_context=tls),
                    limits=pool_limits(library),
                )
            proxied[scheme] = by_url[proxy.url]
        return cls(direct, proxied, routes)

    async def handle_async_request(self, request: Any) -> Any:
        """Send ``request`` through the proxy for its URL, or directly."""
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        proxy = self._routes.proxy_for(url.scheme, url.raw_host.decode("ascii"), port)
        transport = self._direct if proxy is None else self._proxied[url.scheme]
        return await transport.handle_async_request(request)

    async def __aenter__(self) -> ProxyRouter:
        for transport in self._all:
            await transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        for transport in self._all:
            await transport.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close every pooled transport."""
        for transport in self._all:
            await transport.aclose()
