"""How dcloop talks to Google: the service-account key, the HTTP session, bounded retries, errors.

gspread sends every request through ``HTTPClient.request``; ``RetryingHTTPClient`` overrides it
with a retry that gives up (gspread's own BackOffHTTPClient never does). gspread passes no
timeout, so the transport adapters give every request, token requests too, a connect and a read
timeout: a request Google accepts and never answers is retried like a dropped connection. An ``endpoint`` sends
Google's hosts to another base URL through a transport adapter: that is how tests reach the local
emulator. Without one, requests go to Google.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Mapping

import requests
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient
from google.auth import exceptions as auth_errors
from requests.adapters import HTTPAdapter

from ..errors import BackendError, ConfigError, DcloopError

SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
GOOGLE_HOSTS = ("https://sheets.googleapis.com/", "https://oauth2.googleapis.com/")
GSPREAD_DEFAULT_KEY = ".config/gspread/service_account.json"  # under the home folder
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
TIMEOUTS = (10.0, 60.0)  # seconds to connect, and to wait for each answer: [table] connect_timeout_s, read_timeout_s
GUIDE = "the README, section Google Sheets"


def credentials_path(configured: str, root: Path, environ: Mapping[str, str], home: Path) -> Path:
    """The key file: --credentials or [table] credentials, then GOOGLE_APPLICATION_CREDENTIALS, then gspread's default.

    A place that is set must hold the file; only unset places fall through to the next.
    """
    places = [("--credentials / [table] credentials", configured, Path(root)),
              ("GOOGLE_APPLICATION_CREDENTIALS", environ.get("GOOGLE_APPLICATION_CREDENTIALS", ""), Path.cwd())]
    for origin, value, base in places:
        if value:
            path = base / Path(value).expanduser()
            if not path.is_file():
                raise ConfigError(f"{origin} names {path}, which is not a file. "
                                  f"Download the service account's JSON key and give its path (see {GUIDE}).")
            return path
    default = Path(home) / GSPREAD_DEFAULT_KEY
    if default.is_file():
        return default
    raise ConfigError(f"no Google service-account key found: --credentials, [table] credentials and "
                      f"GOOGLE_APPLICATION_CREDENTIALS are unset and {default} does not exist. "
                      f"Create a service account, download its JSON key and pass --credentials KEY.json "
                      f"(see {GUIDE}).")


def load_credentials(path: Path):
    """Service-account credentials from a JSON key file, with a clear error for the wrong kind of file."""
    from google.oauth2 import service_account
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable JSON key file ({e}).") from e
    kind = info.get("type") if isinstance(info, dict) else None
    if kind != "service_account":
        raise ConfigError(f"{path} is not a service-account key (its type is {kind or 'missing'}). "
                          f"dcloop needs the JSON key of a service account: Cloud console > IAM > "
                          f"Service accounts > Keys > Add key > JSON (see {GUIDE}).")
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{path}: the service-account key is incomplete or damaged ({e}); "
                          f"download a new key.") from e


class TimeoutAdapter(HTTPAdapter):
    """Sends every request with (connect, read) timeouts, whatever the caller passed (gspread: none)."""

    def __init__(self, timeouts: tuple[float, float] = TIMEOUTS, **kwargs):
        super().__init__(**kwargs)
        self.timeouts = timeouts

    def send(self, request, **kwargs):
        kwargs["timeout"] = self.timeouts
        return super().send(request, **kwargs)


class EndpointAdapter(TimeoutAdapter):
    """Sends requests meant for Google's hosts to another base URL, such as a local emulator."""

    def __init__(self, base: str, timeouts: tuple[float, float] = TIMEOUTS, **kwargs):
        super().__init__(timeouts, **kwargs)
        self.base = base.rstrip("/")

    def send(self, request, **kwargs):
        for host in GOOGLE_HOSTS:
            if request.url.startswith(host):
                request.url = f"{self.base}/{request.url[len(host):]}"
        return super().send(request, **kwargs)


def authorized_session(credentials, endpoint: str = "", timeouts: tuple[float, float] = TIMEOUTS):
    """A requests session that signs requests with ``credentials``, every request (token requests too)
    under ``timeouts`` (connect, read seconds); ``endpoint`` replaces Google's hosts."""
    from google.auth.transport.requests import AuthorizedSession, Request
    token_session = requests.Session()
    session = AuthorizedSession(credentials, auth_request=Request(token_session))
    for each, prefix in itertools.product((session, token_session), ("https://", "http://")):
        each.mount(prefix, TimeoutAdapter(timeouts))
    if endpoint:
        adapter = EndpointAdapter(endpoint, timeouts)
        for each, host in itertools.product((session, token_session), GOOGLE_HOSTS):
            each.mount(host, adapter)
    return session


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries within ``deadline_s``; waits grow from ``base_s`` up to ``cap_s``.

    After a 429 the waits grow so that all the tries together span at least ``quota_s``: Google's
    quotas are per minute per user (60 reads and 60 writes), and a quota that ran out refills only
    a minute later, so a retry that gives up sooner loses the sync for nothing.
    """

    attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 32.0
    deadline_s: float = 150.0
    quota_s: float = 70.0


def backoff(attempt: int, policy: RetryPolicy, retry_after: float | None, rng: random.Random,
            quota: bool = False) -> float:
    """Seconds to wait after failed try number ``attempt`` (0-based): full jitter, at least Retry-After,
    and after a 429 at least ``quota_floor``."""
    wait = rng.uniform(0, min(policy.cap_s, policy.base_s * 2 ** attempt))
    if quota:
        wait = max(wait, quota_floor(attempt, policy))
    return wait if retry_after is None else max(wait, retry_after)


def quota_floor(attempt: int, policy: RetryPolicy) -> float:
    """The least wait after 429 number ``attempt``: doubling shares of ``quota_s`` that add up to it
    over the policy's waits (70 s over 5 waits: 2.3, 4.5, 9, 18 and 36 s)."""
    waits = policy.attempts - 1
    return policy.quota_s * 2 ** attempt / (2 ** waits - 1) if waits > 0 else 0.0


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from ``now``; None when absent or bad."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - now)
    except (TypeError, ValueError):
        return None


class GaveUp(Exception):
    """Retries ran out; ``last`` is the final error."""

    def __init__(self, last: Exception, tries: int, seconds: float):
        super().__init__(f"gave up after {tries} tries over {seconds:.1f}s: {last}")
        self.last, self.tries, self.seconds = last, tries, seconds


class RetryingHTTPClient(HTTPClient):
    """gspread's HTTP client with bounded retries of 408, 429, 5xx, dropped connections and timeouts
    (a token request's arrive wrapped in google-auth's TransportError)."""

    def __init__(self, auth, session=None, policy: RetryPolicy = RetryPolicy(),
                 sleep=time.sleep, clock=time.monotonic, rng: random.Random | None = None):
        super().__init__(auth, session)
        self.policy, self.sleep, self.clock = policy, sleep, clock
        self.rng = rng or random.Random()
        self.whole = False  # True while as_one retries a whole operation: its requests are tried once

    def request(self, *args, **kwargs):
        send = functools.partial(super().request, *args, **kwargs)
        return send() if self.whole else self.retried(send)

    def as_one(self, send, applied=None):
        """Run ``send()`` with retries of the whole of it rather than of each request.

        For operations that must not be repeated blindly: after an answer that may have been lost
        (a 5xx, 408 or dropped connection: Google may have applied the request), ``applied()`` is
        asked before sending again, and when it says the first try took effect nothing is re-sent.
        A 429 means Google refused the request, so it alone never calls ``applied``.
        """
        self.whole = True
        try:
            return self.retried(send, applied)
        finally:
            self.whole = False

    def retried(self, send, applied=None):
        started, unsure = self.clock(), False
        for attempt in itertools.count():
            try:
                if unsure and applied is not None and applied():
                    return None
                return send()
            except APIError as e:
                status = e.response.status_code
                if status not in RETRY_STATUS:
                    raise
                last, retry_after = e, retry_after_seconds(e.response.headers.get("Retry-After"), time.time())
                unsure = unsure or status != 429
            except (requests.ConnectionError, requests.Timeout, auth_errors.TransportError) as e:
                last, retry_after, unsure = e, None, True
            quota = isinstance(last, APIError) and last.response.status_code == 429
            wait = backoff(attempt, self.policy, retry_after, self.rng, quota)
            spent = self.clock() - started
            if attempt + 1 >= self.policy.attempts or spent + wait > self.policy.deadline_s:
                raise GaveUp(last, attempt + 1, spent) from last
            self.sleep(wait)


def api_status(error: APIError) -> tuple[int, str, str]:
    """(HTTP status, Google's status word, message) of an API error."""
    body = error.error if isinstance(error.error, dict) else {}
    return error.response.status_code, str(body.get("status", "")), str(body.get("message", error))


def service_disabled(error: APIError) -> bool:
    body = error.error if isinstance(error.error, dict) else {}
    reasons = {d.get("reason") for d in body.get("details", []) if isinstance(d, dict)}
    message = str(body.get("message", ""))
    return "SERVICE_DISABLED" in reasons or "accessNotConfigured" in message or "is disabled" in message


def translate(error: Exception, where: str, account: str) -> DcloopError:
    """One of dcloop's errors for an error from gspread, google-auth or requests, saying what to do."""
    from google.auth import exceptions as auth_errors
    if isinstance(error, GaveUp):
        return gave_up(error, where)
    if isinstance(error, APIError):
        return api_error(error, where, account)
    if isinstance(error, auth_errors.RefreshError):
        return BackendError(f"{where}: Google refused the service-account key of {account or 'the account'} "
                            f"({error}). The key may have been deleted or the clock of this machine may be "
                            f"wrong: create a new JSON key for the service account and pass --credentials "
                            f"(see {GUIDE}).")
    if isinstance(error, (auth_errors.TransportError, requests.RequestException)):
        return BackendError(f"{where}: could not reach Google ({error}); check the network and sync again.")
    raise error


def gave_up(error: GaveUp, where: str) -> BackendError:
    tried = f"after {error.tries} tries over {error.seconds:.0f}s"
    if isinstance(error.last, APIError):
        status, _, message = api_status(error.last)
        if status == 429:
            return BackendError(f"{where}: Google's quota for the Sheets API (about 60 requests a minute per "
                                f"user) stayed exceeded {tried}. Wait a minute and sync again; if it keeps "
                                f"happening, stop other scripts that use the same service account.")
        return BackendError(f"{where}: Google Sheets kept failing with {status} ({message}) {tried}. "
                            f"It is likely a problem at Google: sync again later.")
    if timed_out(error.last):
        return BackendError(f"{where}: Google did not answer in time {tried} (the last request waited "
                            f"[table] read_timeout_s, or connect_timeout_s to connect); check the network "
                            f"and sync again, or raise those settings in dcloop.toml.")
    return BackendError(f"{where}: could not reach Google Sheets {tried} ({error.last}); "
                        f"check the network and sync again.")


def timed_out(error: Exception) -> bool:
    """A request that was not answered in time, also when google-auth wrapped it (token requests)."""
    return isinstance(error, requests.Timeout) or isinstance(error.__cause__, requests.Timeout)


def api_error(error: APIError, where: str, account: str) -> BackendError:
    status, word, message = api_status(error)
    who = account or "the service account"
    if status == 404:
        return BackendError(f"{where} was not found. Check the sheet url or key in --sheet or [table] sheet "
                            f"of dcloop.toml: copy it from the browser's address bar.")
    if status == 403 and service_disabled(error):
        return BackendError(f"{where}: the Google Sheets API is not enabled in the service account's Cloud "
                            f"project. Enable it (Cloud console > APIs & Services > Library > Google Sheets "
                            f"API > Enable), wait a minute and try again. Google says: {message}")
    if status == 403:
        return BackendError(f"{where}: {who} may not open this sheet. Share the sheet with {who} as Editor "
                            f"(the Share button in Google Sheets), then try again.")
    if status == 401:
        return BackendError(f"{where}: Google did not accept the credentials of {who} ({message}); "
                            f"create a new JSON key and pass --credentials (see {GUIDE}).")
    if status == 400 and "Unable to parse range" in message:
        return BackendError(f"{where}: a tab dcloop needs is missing ({message}). Run 'dcloop init DIR "
                            f"--sheet URL' again: it adds missing tabs and keeps your data.")
    return BackendError(f"{where}: Google Sheets refused a request with {status} {word}: {message}")
