"""Where the service may connect on a user's behalf, and how it shows a user's URL.

Shared by the API (checks at submit), the worker (checks again before a stream runs, and on
every request its stream makes: ``core.egress_proxy``; the snapshot a user draws lines on:
``api/snapshot.py``) and the engine (``redact_url`` for logs and answers, ``pinned_rtsp_url``;
its policy check is a callable the worker hands in, so the engine needs no settings).

- ``is_public_address``: the server-side request forgery rule of job webhooks and streams.
- ``stream_addresses``/``check_stream_url``: a stream source may be public, or private
  inside the operator's STREAM_ALLOWED_NETWORKS; ``pinned_rtsp_url`` sends an rtsp://
  connection to the address checked.
- ``redact_url``: a URL with nothing of its credentials, for logs, records and answers.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

from core.errors import InvalidInput, SourceHostUnresolved, StreamSourceNotAllowed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# --- the address rule ------------------------------------------------------------------------

# IPv6 ranges that carry an IPv4 address in their last 32 bits: NAT64's well-known prefix
# (RFC 6052), SIIT's IPv4-translated addresses (::ffff:0:a.b.c.d, RFC 2765) and the
# deprecated IPv4-compatible addresses (::a.b.c.d).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# NAT64's local-use prefix (RFC 8215): translated inside one network, never public.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# All of IPv6's global unicast space today. Python's ``is_global`` is True for much outside it
# (site-local fec0::/10, unassigned ranges such as 4000::/3) that routes nowhere public.
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def is_public_address(address: Address) -> bool:
    """True when the service may connect to ``address`` for a user: global unicast, and, for
    an IPv6 address that carries an IPv4 one (mapped, SIIT, IPv4-compatible, 6to4, Teredo,
    NAT64), that IPv4 address is public too. ``is_global`` alone (Python 3.11) calls
    64:ff9b::7f00:1, 2002:7f00:1::, ::7f00:1 and ::ffff:0:7f00:1, all ways of reaching
    127.0.0.1, global, and multicast and site-local (fec0::/10) addresses too. An IPv6
    address outside 2000::/3 that carries no IPv4 address is never public."""
    if address.version == 6:
        translated = _translated_ipv4(address)
        if translated is not None:
            return is_public_address(translated)
        if address not in _GLOBAL_UNICAST or address in _NAT64_LOCAL:
            return False
    if address.is_multicast or not address.is_global:
        return False
    return all(is_public_address(inner) for inner in _tunnelled_ipv4(address))


def _translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, SIIT, NAT64, IPv4-compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or address in _SIIT or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a global IPv6 address tunnels to: 6to4's, Teredo's server and client."""
    if address.version == 4:
        return []
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


# --- stream sources --------------------------------------------------------------------------

STREAM_SCHEMES = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def stream_addresses(host: str, port: int, allowed_networks: list[str]) -> list[str]:
    """The addresses ``host`` resolves to, each checked: public, or inside one of
    ``allowed_networks`` (STREAM_ALLOWED_NETWORKS). A connection must go to one of these, not
    to a fresh DNS answer (DNS rebinding).

    Raises:
        SourceHostUnresolved: DNS gave no answer (transient: DNS may be back in a minute).
        StreamSourceNotAllowed: an address is private and outside the allowlist.
        InvalidInput: ``host`` is no valid host name.
    """
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise SourceHostUnresolved(f"source_url: cannot resolve host {host!r}") from None
    except (UnicodeError, ValueError):  # IDNA: a label over 63 characters, an empty label
        raise InvalidInput("source_url: the host name is not valid") from None
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in allowed_networks]
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]  # no %scope
    for address in addresses:
        if not is_public_address(address) and not any(address in network for network in networks):
            raise StreamSourceNotAllowed(
                f"source_url: {host!r} resolves to a non-public address ({address}) outside "
                "STREAM_ALLOWED_NETWORKS; an operator can allow a camera network there (CIDRs, e.g. 10.20.0.0/16)"
            )
    return list(dict.fromkeys(str(address) for address in addresses))  # in order, once each


def check_stream_url(url: str, allowed_networks: list[str]) -> list[str]:
    """The callback check, for a live stream's source: rtsp, rtsps, http or https (HLS); the
    host must resolve; a non-public address (loopback, LAN, link-local, ...) is refused
    unless it lies in one of ``allowed_networks``: cameras live on private networks, but
    which ones is the operator's choice, and none is allowed by default. Returns the
    addresses checked. Messages never repeat the URL: it may hold credentials.

    Raises:
        InvalidInput: not such a URL, or a malformed one (a bad port, an unclosed bracket).
        SourceHostUnresolved: the host does not resolve (an InvalidInput: 422 at submit; the
            worker retries it, as DNS may be back later).
        StreamSourceNotAllowed: a private address outside the allowlist.
    """
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # "rtsp://[::1/x", "rtsp://host:notaport/x", a port over 65535
        raise InvalidInput("source_url: not a valid URL (check the port, and the brackets around "
                           "an IPv6 address)") from None
    if scheme not in STREAM_SCHEMES or not host:
        raise InvalidInput(f"source_url: expected an rtsp://, rtsps://, http:// or https:// URL with a host, "
                           f"got {scheme + '://...' if scheme else 'no scheme'}")
    return stream_addresses(host, port or STREAM_SCHEMES[scheme], allowed_networks)


def pinned_rtsp_url(url: str, addresses: list[str]) -> str:
    """``url`` with its host replaced by ``addresses[0]`` when it is rtsp:// (so FFmpeg connects
    to the address that was checked, not to a fresh DNS answer). rtsps:// and http(s):// keep
    their host name: TLS verifies it, and HTTP(S) goes through the checking proxy instead."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "rtsp" or not addresses:
        return url
    host = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if "@" in parts.netloc else "") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --- showing a URL ---------------------------------------------------------------------------

MAX_REDACTED = 500
UNPARSEABLE = "<unparseable>"
# path parts where cameras put credentials: user=admin_password=x_channel=1 (Dahua-style),
# ;auth=...; the value is masked up to the next separator (too much rather than too little)
_SECRET_ASSIGNMENT = re.compile(r"(?i)(user(?:name)?|pass(?:word|wd)?|pwd|token|auth\w*|key|secret|sig\w*)=[^/;&?#]*")
_PATH_PARAMS = re.compile(r";[^/]*")  # ;params of a path segment (RFC 3986), often credentials
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,15})://")


def redact_url(url: str) -> str:
    """What the service shows and logs of a user's URL: ``scheme://host[:port]/path``, never
    the user, password, query or fragment, and with credential-like parts of the path
    (``password=...``, ``token=...``, ``;params``) masked as ``***``. Never raises: a URL
    that does not parse is ``scheme://<unparseable>``. At most 500 characters."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number or out of range
        scheme = _SCHEME.match(url)
        return f"{scheme.group(1).lower()}://{UNPARSEABLE}" if scheme else UNPARSEABLE
    if not parts.scheme:
        return UNPARSEABLE
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{port}" if port is not None else host
    path = _PATH_PARAMS.sub(";***", parts.path)
    path = _SECRET_ASSIGNMENT.sub(lambda found: f"{found.group(1)}=***", path)
    return f"{parts.scheme}://{netloc}{path}"[:MAX_REDACTED]
