"""How the Hub's answers are read: which failures are worth another try, how long to wait, and the one error line
(message and fix) each refusal becomes, with the token scope it needs.
"""

from __future__ import annotations

from collections.abc import Callable

#: Statuses worth another try: huggingface_hub's own ``http_backoff`` retries these.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Seconds to wait before each retry (three retries after the first try).
RETRY_DELAYS = (2.0, 4.0, 8.0)
#: The longest ``Retry-After`` honoured; a Hub that asks for more is told to the user instead.
MAX_RETRY_AFTER = 60.0

#: The rule a repository name follows (huggingface_hub's ``validate_repo_id``, the Hub's own check behind it).
NAME_RULE = (
    "OWNER/NAME, OWNER your Hub user name or an organisation's; NAME of letters, digits, '-', '_' and '.', at most "
    "96 characters, not starting or ending with '-' or '.', without '--' or '..', not ending in '.git'"
)


def token_scope(owner: str) -> str:
    """The token a push to ``owner`` needs, as the Hub's token settings name its kinds."""
    return (
        f"a token with write access to {owner}: a fine-grained token with write access to {owner}'s repositories, "
        "or a classic write token"
    )


def refusal(
    exc: BaseException,
    doing: str,
    *,
    repo_id: str,
    revision: str,
    create_pr: bool,
    endpoint: str,
    whoami: Callable[[], tuple[str, str] | None],
    token_name: str = "HF_TOKEN",
) -> tuple[str, str] | None:
    """The error line for a request that failed after its retries: ``(message, hint)``, by the HTTP status.

    Branches on ``err.response.status_code``, not on huggingface_hub's exception classes: the client maps a 401
    differently on ``http://`` and ``https://`` endpoints.

    Args:
        exc: what the request raised.
        doing: what the push was doing, for the message (``creating the repository``, ``opening the pull request``).
        repo_id, revision, create_pr: the push.
        endpoint: the Hub.
        whoami: the token's user and role (``read``, ``write``, ``fineGrained``), or ``None``; asked on a 403 only.
        token_name: how the message names the token (``HF_TOKEN``, or the file ``hf auth login`` stored it in); the
            fix still says to set ``HF_TOKEN``, which comes first.

    Returns:
        ``None`` when ``exc`` is neither an answer of the Hub nor a transport failure (a bug: the caller raises it).
    """
    owner = repo_id.split("/")[0]
    status, server = status_of(exc), server_message(exc)
    scope = token_scope(owner)
    settings = f"{endpoint}/settings/tokens"
    if status is None:
        cause = transient(exc)
        if cause is not None:
            return (
                f"could not reach the Hub at {endpoint} while {doing} ({cause}, {len(RETRY_DELAYS) + 1} tries)",
                "check the network (HF_ENDPOINT, proxy settings) and push again: a folder already on the Hub "
                "makes no new commit",
            )
        return None
    if status == 401:
        return (
            f"the Hub refused {token_name} while {doing} (401: {server or 'invalid or expired token'})",
            f"set HF_TOKEN to a valid token ({settings}): {scope}",
        )
    if status == 403:
        return forbidden(whoami(), doing, server, repo_id=repo_id, create_pr=create_pr, token_name=token_name)
    if status == 404 and doing == "creating the repository":
        return (
            f"the Hub has no namespace {owner} ({server or '404'})",
            f"OWNER must be your user name or an existing organisation: pass --repo-id {NAME_RULE}",
        )
    if status == 404:
        return (
            f"{repo_id} or its revision {revision} was not found while {doing} ({server or '404'})",
            f"check --repo-id and --revision, and that {token_name} may read the repository: {scope}",
        )
    if status == 409 and doing == "creating the repository":
        return (
            f"{repo_id} exists, but {token_name} cannot read it ({server or '409'}): a private repository, or "
            "one whose name differs only in letter case",
            f"pass its exact name, and set HF_TOKEN to {scope}",
        )
    if status == 400 and doing == "creating the repository":
        return (f"the Hub refused the repository name {repo_id!r} ({server})", NAME_RULE)
    if status in TRANSIENT_STATUSES:
        return (
            f"the Hub answered {status} while {doing}, {len(RETRY_DELAYS) + 1} times ({server or 'no message'})",
            "the Hub may be busy or down: push again later; a folder already on the Hub makes no new commit",
        )
    return (
        f"the Hub answered {status} while {doing} ({server or 'no message'})",
        "read the Hub's message above; push again once it is fixed",
    )


def public_repository(repo_id: str, endpoint: str) -> tuple[str, str]:
    """The error line of ``--private`` for a repository that exists and is public (a push would publish it)."""
    return (
        f"{repo_id} exists and is public: --private only makes a new repository private",
        f"make it private on the Hub ({endpoint}/{repo_id}/settings) and push again, or drop --private to push to "
        "the public repository",
    )


def forbidden(
    who: tuple[str, str] | None, doing: str, reason: str, *, repo_id: str, create_pr: bool, token_name: str
) -> tuple[str, str]:
    """The error line of a push the token may not make (a 403, or what ``whoami`` says before converting).

    Args:
        who: the token's user and role (``read``, ``write``, ``fineGrained``), or ``None`` when unknown.
        doing: what the push was doing (``creating the repository``, ``committing to main`` ...).
        reason: the Hub's message (empty when none), or how it was known before any upload.
        repo_id, create_pr: the push.
        token_name: how the message names the token.
    """
    owner = repo_id.split("/")[0]
    if who and who[1] == "read":
        what = f"{token_name} is a read token of {who[0]}: it may not write to {repo_id}"
    elif who:
        user = f"{token_name}'s user {who[0]}" if " " not in token_name else f"{who[0]}, the user of {token_name},"
        what = f"{user} may not write to {owner} ({doing}: {reason or '403'})"
    else:
        what = f"the Hub refused {doing} (403: {reason or 'forbidden'})"
    hint = f"set HF_TOKEN to {token_scope(owner)}"
    if doing == "creating the repository":
        hint = f"{owner} must exist and be your user name or an organisation you may create repositories in; {hint}"
    elif not create_pr and not (who and who[1] == "read"):  # a read token may not open a pull request either
        hint += ", or push as a pull request (--create-pr)"
    return (what, hint)


def status_of(exc: BaseException | None) -> int | None:
    """The HTTP status of the answer ``exc`` carries (``err.response.status_code``), or ``None``."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def server_message(exc: BaseException) -> str:
    """The Hub's own message (``X-Error-Message``) on one line, at most 300 characters; empty when none."""
    message = getattr(exc, "server_message", None)
    text = message if isinstance(message, str) and message.strip() else ""
    return " ".join(text.split())[:300]


def one_line(exc: BaseException, *, skip: int = 0) -> str:
    """An exception's text on one line (its lines joined, the first ``skip`` left out), at most 300 characters."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[skip:] or lines)[:300]


def _transport_errors() -> tuple[type[BaseException], ...]:
    # the transport errors huggingface_hub's http_backoff retries (its client is httpx2 since 2.x, httpx in 1.x)
    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        import httpx
    return (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def transient(exc: BaseException) -> str | None:
    """Why ``exc`` is worth another try, for the log ("the Hub answered 503"), or ``None``.

    Transient: an answer in ``TRANSIENT_STATUSES``, a timeout, a network error or a connection closed without an
    answer, as huggingface_hub's ``http_backoff`` counts them.
    """
    status = status_of(exc)
    if status is not None:
        return f"the Hub answered {status}" if status in TRANSIENT_STATUSES else None
    if isinstance(exc, _transport_errors()):
        return f"the connection failed ({type(exc).__name__})"
    return None


def retry_after(exc: BaseException) -> float | None:
    """The seconds the answer's ``Retry-After`` asks for (the delay form only, not an HTTP date), or ``None``."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = str(headers.get("Retry-After", "")).strip()
    return float(value) if value.isdigit() else None


def reset_connections(exc: BaseException) -> None:
    """After a connection error, close huggingface_hub's shared client: the next request builds a new one (as
    huggingface_hub's own retries do)."""
    if type(exc).__name__ == "ConnectError":
        from huggingface_hub.utils import close_session

        close_session()
