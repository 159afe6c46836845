"""Turn MLflow client errors into retryable or final Dagster failures.

Transient (connection refused, timeouts, HTTP 408, 429 and 5xx) errors are re-raised as
`MlflowTransientError`, which the assets' RetryPolicy retries. Deterministic ones (other HTTP 4xx,
bad input) become `dg.Failure(allow_retries=False)`: retrying them cannot succeed.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from lakehouse_assets.lib.settings import redacted_catalog

# Endpoints that MLflow 2.x servers do not have; a 404 on them means an older server.
MLFLOW3_ONLY_ENDPOINTS = ("/logged-models", "/traces", "/webhooks", "/scorers", "/prompts")
STATUS_PATTERNS = (
    re.compile(r"error code (\d{3})"),
    re.compile(r"too many (\d{3}) error responses"),
    re.compile(r"\b(\d{3}) (?:Client|Server) Error"),
)
ENDPOINT_PATTERN = re.compile(r"(/api/[\w./-]+|/ajax-api/[\w./-]+)")
# MLflow error codes (from a JSON error body) that mean "try again later".
TRANSIENT_ERROR_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


class MlflowTransientError(Exception):
    """An MLflow request failed in a way that may succeed when retried."""


def http_status(error: BaseException) -> int | None:
    """The HTTP status behind an MLflow client error, if one can be found in it or its causes."""
    for exc in _chain(error):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
        for pattern in STATUS_PATTERNS:
            if match := pattern.search(str(exc)):
                return int(match.group(1))
    # A JSON error body: MLflow maps its error_code to a status. INTERNAL_ERROR is also what the
    # client reports for connection failures, so it says nothing.
    code = getattr(error, "error_code", None)
    if code and code != "INTERNAL_ERROR" and hasattr(error, "get_http_status_code"):
        return error.get_http_status_code()
    return None


def is_transient_status(status: int) -> bool:
    """408, 429 and 5xx (but 501 Not Implemented and 505 Version Not Supported) may pass later."""
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def is_transient(error: BaseException) -> bool:
    """Retryable: a transient HTTP status, or a connection failure or timeout (not TLS)."""
    import requests

    status = http_status(error)
    if status is not None:
        return is_transient_status(status)
    for exc in _chain(error):
        if isinstance(exc, requests.exceptions.SSLError):
            return False
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        if getattr(exc, "error_code", None) in TRANSIENT_ERROR_CODES:
            return True
    return False


def likely_cause(error: BaseException, status: int | None) -> str:
    endpoint = _endpoint(error) or ""
    if status == 404 and any(part in endpoint for part in MLFLOW3_ONLY_ENDPOINTS):
        return (
            "the server is older than the client: this endpoint exists only on MLflow 3.x servers"
        )
    if status == 404:
        return (
            "the tracking URI does not point at an MLflow server, or the server is older than "
            "the client and lacks this endpoint"
        )
    if status in (401, 403):
        return "the server refused the credentials (check MLFLOW_TRACKING_TOKEN or _USERNAME/_PASSWORD)"
    if status is not None and 400 <= status < 500:
        return "the server rejected the request as invalid"
    if status in (501, 505):
        return "the server does not implement this request or this HTTP version"
    if status is None and _is_foreign_json_answer(error):
        return (
            "the answer is not from MLflow but from something in front of it (a proxy, gateway "
            "or authentication layer): its JSON body lacks MLflow's error_code, and the MLflow "
            "client then hides the HTTP status"
        )
    if status is None:
        return "the server or client reported an error that retrying will not fix"
    return "an unexpected MLflow error"


@contextmanager
def mlflow_errors(action: str, server: str) -> Iterator[None]:
    """Classify any MLflow error raised while doing `action` against `server`."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested, MlflowTransientError):  # RetryRequested: a lake
        raise  # commit that conflicted with another writer, run again by Dagster
    except Exception as error:
        status = http_status(error)
        endpoint = _endpoint(error)
        where = f"{endpoint} on {server}" if endpoint else server
        code = f"HTTP {status}" if status else type(error).__name__
        if is_transient(error):
            raise MlflowTransientError(
                f"MLflow request to {action} failed transiently ({code}) at {where}; "
                f"the step will be retried. {_short(error)}"
            ) from None  # the original may hold a URL with credentials; its text is redacted here
        client_version = _client_version()
        raise dg.Failure(
            description=(
                f"MLflow request to {action} failed ({code}) at {where}: likely cause: "
                f"{likely_cause(error, status)}. Not retried, since the same request would fail "
                f"again. MLflow client {client_version}. Error: {_short(error)}"
            ),
            metadata={
                "mlflow_server": server,
                "endpoint": endpoint or "",
                "http_status": status or 0,
            },
            allow_retries=False,
        ) from None


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_foreign_json_answer(error: BaseException) -> bool:
    """A RestException built from a JSON body without MLflow's `error_code`."""
    body = getattr(error, "json", None)
    return isinstance(body, dict) and "error_code" not in body


def _endpoint(error: BaseException) -> str | None:
    for exc in _chain(error):
        if match := ENDPOINT_PATTERN.search(str(exc)):
            return match.group(1)
    return None


USERINFO_PATTERN = re.compile(r"//[^/\s]*@")


def redact(text: str) -> str:
    """Drop `user:password@` from any URL in `text`, and any libpq `password=...` (a lake
    catalog on PostgreSQL)."""
    return redacted_catalog(USERINFO_PATTERN.sub("//***@", text))


def _short(error: BaseException, limit: int = 400) -> str:
    text = redact(" ".join(str(error).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _client_version() -> str:
    import mlflow

    return mlflow.__version__


@contextmanager
def retry_only_transient(step: str) -> Iterator[None]:
    """Make any error of `step` other than a transient MLflow one final: the RetryPolicy of the
    model steps must not retry a bug or bad data."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested, MlflowTransientError):  # RetryRequested: a lake
        raise  # commit that conflicted with another writer, run again by Dagster
    except Exception as error:
        raise dg.Failure(
            description=f"{step} failed: {type(error).__name__}: {_short(error)}. Not retried.",
            allow_retries=False,
        ) from error
