"""Images over http: guarded sessions, bounded answers, retries; imported only when a sync fetches one.

requests and urllib3 take a fifth of a second to import; a sync whose images are all cached or
local never pays for it (dcloop.images imports this module once an http image is missing or due).
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlparse

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .images import HOST_FAILURE_LIMIT, HTTP_TIMEOUT_S, MAX_IMAGE_BYTES, PRIVATE_HOST, Unreadable, is_http, over_limit

if TYPE_CHECKING:
    from .images import ImageStore

MAX_REDIRECTS = 5


class TooLarge(Unreadable):
    """A body over the size limit."""


class TooSlow(Unreadable):
    """An answer still arriving at the deadline."""


def conditional_headers(cached: dict | None) -> dict[str, str]:
    if not cached:
        return {}
    headers = {"If-None-Match": cached.get("etag", ""), "If-Modified-Since": cached.get("modified", "")}
    return {k: v for k, v in headers.items() if v}


def host_of(url: str) -> str:
    try:
        return urlparse(url).netloc
    except ValueError:  # e.g. http://[::1
        return url


class HostFailures:
    """Urls per host that could not be reached this fetch (timeouts, refused or reset connections).

    Shared by the download threads. An HTTP error status does not count: the host is up.
    """

    def __init__(self, limit: int = HOST_FAILURE_LIMIT):
        self.limit, self.urls, self.lock = limit, {}, threading.Lock()

    def add(self, url: str) -> None:
        with self.lock:
            self.urls.setdefault(host_of(url), set()).add(url)

    def given_up(self, url: str) -> bool:
        with self.lock:
            return len(self.urls.get(host_of(url), ())) >= self.limit


def is_private(address: str) -> bool:
    """Whether an IP address is not a public unicast one: loopback, private, link-local (cloud
    metadata at 169.254.169.254), unspecified, multicast, reserved or shared, in IPv4 or IPv6,
    including IPv4 addresses carried inside IPv6 (::ffff:a.b.c.d, 6to4, NAT64)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_private(str(embedded))
    return (not ip.is_global or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified)


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def public_address(host: str, port: int) -> str:
    """The address to connect to for ``host``: its first, once every address it resolves to is public.

    Resolving here and connecting to that very address pins it: a name that resolves again to
    another address (DNS rebinding) cannot change where the connection goes.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return host  # urllib3 reports the failed lookup; the peer is still checked once connected
    addresses = [info[4][0] for info in found]
    if not addresses or any(is_private(a) for a in addresses):
        raise Unreadable(PRIVATE_HOST)
    return addresses[0]


class Watchdog:
    """Cuts the connections of one request at its deadline, wherever it waits: headers or body.

    A socket timeout bounds each wait for data, not the whole answer: a server sending a byte
    every few seconds would otherwise hold a fetch for days. The connections a request uses
    register themselves with the watchdog of their thread.
    """

    active = threading.local()

    def __init__(self, seconds: float):
        self.sockets, self.expired, self.lock = [], False, threading.Lock()
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    def __enter__(self) -> Watchdog:
        Watchdog.active.current = self
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        Watchdog.active.current = None

    def expire(self) -> None:
        with self.lock:
            self.expired, sockets = True, list(self.sockets)
        for sock in sockets:
            cut(sock)

    def watch(self, sock) -> None:
        with self.lock:
            self.sockets.append(sock)
            expired = self.expired
        if expired:
            cut(sock)

    @classmethod
    def watch_current(cls, sock) -> None:
        current = getattr(cls.active, "current", None)
        if current is not None and sock is not None:
            current.watch(sock)


def cut(sock) -> None:
    """Shut a socket down, waking a read blocked on it in another thread (the base method: TLS too)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def guarded(connection: type, private_hosts: bool) -> type:
    """A urllib3 connection class that connects only to public addresses (unless ``private_hosts``)
    and that the request's Watchdog can cut."""

    class Guarded(connection):
        def _new_conn(self):
            host = self._dns_host
            if not private_hosts:
                self._dns_host = public_address(host, self.port)
            try:
                sock = super()._new_conn()
            finally:
                self._dns_host = host
            if not private_hosts and is_private(sock.getpeername()[0]):
                sock.close()
                raise Unreadable(PRIVATE_HOST)
            return sock

        def request(self, *args, **kwargs):
            if self.sock is None:
                self.connect()
            Watchdog.watch_current(self.sock)
            return super().request(*args, **kwargs)

    return Guarded


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with guarded connections: every hop, every connection is checked."""

    def __init__(self, private_hosts: bool):
        self.private_hosts = private_hosts
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        self.pools = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,),
                         {"ConnectionCls": guarded(HTTPConnection, self.private_hosts)}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": guarded(HTTPSConnection, self.private_hosts)})}
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self.pools

    def proxy_manager_for(self, proxy, **kwargs):
        """Through an http(s) proxy (only where private hosts are allowed) the watchdog still applies."""
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = self.pools
        return manager


def http_session(private_hosts: bool = True) -> requests.Session:
    """A session whose connections are guarded. Refusing private hosts also ignores proxy
    settings from the environment: a proxy would connect on our behalf, unchecked."""
    session = requests.Session()
    adapter = GuardedAdapter(private_hosts)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = private_hosts
    return session


@dataclass(frozen=True)
class Answer:
    """An image's bytes and validators; ``data`` is None when the server said 304 Not Modified."""

    data: bytes | None
    etag: str = ""
    modified: str = ""


def read_limited(session: requests.Session, url: str, timeout_s: float = HTTP_TIMEOUT_S,
                 max_bytes: int = MAX_IMAGE_BYTES, headers: dict | None = None) -> Answer:
    """The body of a GET, refused past ``max_bytes`` (a server may send an endless body).

    ``timeout_s`` bounds the connection and each wait for data; the whole answer, redirects
    included, must arrive within four times that (a Watchdog cuts it there), so a server
    that trickles bytes cannot hold a fetch forever. Only a session from http_session()
    registers its connections with the watchdog.
    """
    limit = 4 * timeout_s
    with Watchdog(limit) as watchdog:
        try:
            answer = read_answer(session, url, timeout_s, max_bytes, headers or {})
        except Unreadable:
            raise
        except Exception as e:
            if watchdog.expired:
                raise TooSlow(f"body still arriving after {limit:g}s") from e
            raise
        if watchdog.expired:  # a cut answer without a length looks complete
            raise TooSlow(f"body still arriving after {limit:g}s")
    return answer


def read_answer(session: requests.Session, url: str, timeout_s: float, max_bytes: int, headers: dict) -> Answer:
    with follow(session, url, timeout_s, headers) as response:
        if response.status_code == 304:
            return Answer(None, response.headers.get("ETag", ""), response.headers.get("Last-Modified", ""))
        response.raise_for_status()
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"body over {over_limit(max_bytes)}")
            chunks.append(chunk)
        return Answer(b"".join(chunks), response.headers.get("ETag", ""), response.headers.get("Last-Modified", ""))


def follow(session: requests.Session, url: str, timeout_s: float, headers: dict) -> requests.Response:
    """GET ``url``, following redirects one hop at a time, so the session's checks see every hop."""
    for _ in range(MAX_REDIRECTS + 1):
        response = session.get(url, stream=True, timeout=timeout_s, headers=headers, allow_redirects=False)
        if not response.is_redirect:
            return response
        response.close()
        url = urljoin(url, response.headers["location"])
        if not is_http(url):
            raise Unreadable("redirected to a url that is not http(s)")
    raise Unreadable(f"more than {MAX_REDIRECTS} redirects")


def download(store: ImageStore, session: requests.Session, url: str, failures: HostFailures,
             cached: dict | None = None):
    """The url's index entry on success, else the last error as a string; retries with backoff.

    With ``cached`` (its index entry), a conditional GET: a 304 keeps the cached bytes.
    A 4xx answer and an Unreadable one (too large, too slow, a private address) are final.
    Once HOST_FAILURE_LIMIT urls of a host could not be reached this cycle, its other urls
    are not tried: a host that is down costs a few timeouts, not a few per url.
    """
    error = ""
    for attempt in range(store.attempts):
        if attempt:
            time.sleep(min(4.0, 0.25 * 2 ** attempt) * (0.5 + random.random()))
        if failures.given_up(url):
            return error or f"skipped: {host_of(url)} could not be reached for {failures.limit} urls"
        try:
            answer = read_limited(session, url, store.timeout_s, store.max_bytes, conditional_headers(cached))
            if answer.data is None:
                if not cached:
                    return "http 304 for an image not cached"
                return {**cached, "etag": answer.etag or cached["etag"],
                        "modified": answer.modified or cached["modified"], "fetched": store.clock()}
            return {"sha": store.store(answer.data), "etag": answer.etag, "modified": answer.modified,
                    "fetched": store.clock()}
        except TooSlow as e:
            failures.add(url)
            return str(e)
        except Unreadable as e:
            return str(e)
        except requests.HTTPError as e:
            error = f"http {e.response.status_code}"
            if e.response.status_code < 500 and e.response.status_code != 429:
                return error
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as e:
            return f"invalid url ({type(e).__name__})"
        except (requests.ConnectionError, requests.Timeout) as e:
            error = f"fetch failed: {type(e).__name__}: {e}"[:200]
            failures.add(url)
        except (requests.RequestException, ValueError, OSError) as e:
            error = f"fetch failed: {type(e).__name__}: {e}"[:200]
    return error
