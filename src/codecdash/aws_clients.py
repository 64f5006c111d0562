"""boto3 clients as codecdash makes them, and AWS failures said in one line.

Every boto3 client of the AWS sources, `codecdash doctor` and `codecdash deploy` is made by a
:class:`ClientFactory`, once per service and region, so that tests can count (or wrap) every
client and every call. The sources' clients use short timeouts and at most two attempts
(:data:`CLIENT_CONFIG`): a slow service must not hold a refresh for long; Cost Explorer bills
every request, retries included (:data:`SINGLE_ATTEMPT`); a deployment waits and retries
more (:data:`PATIENT`). boto3's own configuration applies unchanged: the credentials chain,
``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
)
SINGLE_ATTEMPT = Config(
    connect_timeout=2, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"}
)
# botocore's own timeouts (60 s) and five attempts: a deployment's calls are few and slow.
PATIENT = Config(retries={"max_attempts": 5, "mode": "standard"})

ACCESS_DENIED = (
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
)
"""The error codes with which AWS refuses an operation to an identity."""

Wrap = Callable[[str, Any], Any]


class ClientFactory:
    """Makes (once) and hands out the boto3 client of each service and region.

    ``session``: the boto3 session to make clients from (default: a new one, made on first
    use). ``config``: the clients' configuration unless a call names another.
    ``wrap(service, client)`` may replace a client (tests count calls with it). ``created``
    counts the clients made per service.
    """

    def __init__(
        self,
        region: str | None = None,
        wrap: Wrap | None = None,
        *,
        session: Any = None,
        config: Config = CLIENT_CONFIG,
    ) -> None:
        self.region = region
        self.wrap = wrap
        self.config = config
        self.created: Counter[str] = Counter()
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()
        self._session = session

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = boto3.session.Session()
            return self._session

    @property
    def region_name(self) -> str | None:
        """The region the clients use: the one given, else boto3's (environment, profile)."""
        return self.region or self.session.region_name

    def __call__(
        self, service: str, *, region: str | None = None, config: Config | None = None
    ) -> Any:
        session = self.session
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = session.client(
                    service, region_name=region or self.region, config=config or self.config
                )
                if self.wrap is not None:
                    client = self.wrap(service, client)
                self.created[service] += 1
                self._clients[key] = client
            return client


_DEFAULT: dict[str | None, ClientFactory] = {}


def default_factory(region: str | None) -> ClientFactory:
    """One factory per region for the life of the process (a warm Lambda reuses its clients)."""
    factory = _DEFAULT.get(region)
    if factory is None:
        factory = _DEFAULT[region] = ClientFactory(region)
    return factory


def error_code(exc: BaseException) -> str:
    """The AWS error code of a refused call ("AccessDenied", "404", …); "" for anything else."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe_error(exc: BaseException) -> str:
    """One line that says what went wrong, with a hint for the usual causes."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run on a role)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Error"))
        message = (
            str(error.get("Message", "")).splitlines()[0][:200] if error.get("Message") else ""
        )
        operation = exc.operation_name
        if code in ACCESS_DENIED:
            return f"{operation}: permission denied ({code}): {message}"
        return f"{operation}: {code}: {message}".rstrip(": ")
    if isinstance(exc, BotoCoreError):
        return str(exc).splitlines()[0][:300]
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return text or type(exc).__name__
