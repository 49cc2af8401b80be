"""Call the Hub for one push: huggingface_hub's ``HfApi``, transient failures retried and logged, refusals as one
error line with the fix, and the token in no message.

huggingface_hub retries the preupload, the LFS transfers and the tree listings itself; the calls it does not retry
(``repo_info``, ``create_repo``, ``list_repo_refs``, the discussions, the commit) go through ``HubClient.retrying``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .. import errors
from ..errors import PushError
from ..progress import Progress
from .hub_answers import (
    MAX_RETRY_AFTER,
    RETRY_DELAYS,
    one_line,
    refusal,
    reset_connections,
    retry_after,
    transient,
)

T = TypeVar("T")


class HubClient:
    """One push's view of the Hub: the client, the repository and revision, the log, and the token to redact.

    Attributes:
        api: huggingface_hub's ``HfApi`` with the token and this package's name and version as its user agent.
        repo_id, owner, revision, create_pr: the push.
        token_name: how messages name the token (``push_token``): ``HF_TOKEN``, or where it was stored.
    """

    def __init__(
        self,
        repo_id: str,
        *,
        revision: str | None,
        create_pr: bool,
        token: str,
        token_name: str = "HF_TOKEN",
        endpoint: str | None,
        progress: Progress,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``revision`` ``None`` is ``main``; ``sleep`` ``None`` is ``time.sleep`` (waits between retries)."""
        from huggingface_hub import HfApi

        self.token_name = token_name
        self.repo_id, self.owner = repo_id, repo_id.split("/")[0]
        self.revision, self.create_pr = revision or "main", create_pr
        self.token, self.progress, self.sleep = token, progress, sleep or time.sleep
        self.api = HfApi(endpoint=endpoint, token=token, library_name=errors.PACKAGE, library_version=_version())

    @property
    def endpoint(self) -> str:
        """The Hub's URL, without a trailing slash."""
        return self.api.endpoint.rstrip("/")

    def say(self, text: str) -> None:
        """One log line, ``push: ...``, without the token."""
        self.progress.line(self.redact(f"push: {text}"))

    def warn(self, text: str) -> None:
        """One warning line, without the token."""
        self.progress.warning(self.redact(text))

    def redact(self, text: str) -> str:
        """``text`` with the token replaced by ``***``."""
        return text.replace(self.token, "***") if self.token else text

    def error(self, message: str, hint: str) -> PushError:
        """A ``PushError`` whose message and fix hold no token."""
        return PushError(self.redact(message), self.redact(hint))

    def retrying(self, what: str, call: Callable[[], T], *, recheck: Callable[[], Any] | None = None) -> Any:
        """``call()``; after a transient failure, log it, wait and try again (``RETRY_DELAYS``, or longer when the
        answer's ``Retry-After`` asks, up to ``MAX_RETRY_AFTER``).

        Args:
            what: what the call does, for the log (``the commit``).
            call: the request.
            recheck: asked before each retry; a result other than ``None`` ends the retries and is returned (a
                commit whose answer was lost may have been made).

        Raises:
            Whatever ``call`` raised last, or at once when it is not transient.
        """
        for attempt in range(len(RETRY_DELAYS) + 1):
            if attempt and recheck is not None:
                found = recheck()
                if found is not None:
                    return found
            try:
                return call()
            except PushError:
                raise
            except Exception as exc:
                cause = transient(exc)
                if cause is None or attempt == len(RETRY_DELAYS):
                    raise
                delay = max(RETRY_DELAYS[attempt], retry_after(exc) or 0.0)
                if delay > MAX_RETRY_AFTER:
                    raise
                self.say(
                    f"{cause} to {what}; retrying in {delay:g} s (attempt {attempt + 2} of {len(RETRY_DELAYS) + 1})"
                )
                reset_connections(exc)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def failure(self, exc: BaseException, doing: str) -> PushError:
        """One ``PushError`` for a failed request; an exception that is no answer of the Hub is raised again (a bug)."""
        told = refusal(
            exc,
            doing,
            repo_id=self.repo_id,
            revision=self.revision,
            create_pr=self.create_pr,
            endpoint=self.endpoint,
            whoami=self.whoami,
            token_name=self.token_name,
        )
        if told is None:
            raise exc
        return self.error(*told)

    def whoami(self) -> tuple[str, str] | None:
        """The token's user and role (``read``, ``write``, ``fineGrained``), or ``None`` when the Hub does not say."""
        try:
            me = self.api.whoami()
        except Exception:
            return None
        role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
        return (str(me.get("name")), str(role)) if me.get("name") else None


def push_token() -> tuple[str | None, str]:
    """The token a push uses, as huggingface_hub's ``get_token()`` finds it, and where it was found, for messages.

    huggingface_hub's order: a token exchanged by OIDC when ``HF_OIDC_RESOURCE`` is set (its Trusted Publishers), then
    ``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``), then the token file ``hf auth login`` writes
    (``HF_TOKEN_PATH``, by default ``HF_HOME/token``).

    Returns:
        ``(token, name)``: the token or ``None``, and how messages name it (``HF_TOKEN``, "the token hf auth login
        stored in PATH" ...). The token itself is never part of ``name``.

    Raises:
        PushError: huggingface_hub could not get the token (an OIDC exchange that failed).
    """
    from huggingface_hub import constants, get_token

    try:
        token = get_token()
    except Exception as exc:  # huggingface_hub raises when an OIDC exchange it was asked for fails
        raise PushError(
            f"huggingface_hub could not get a Hugging Face token ({type(exc).__name__}: {one_line(exc)})",
            "check HF_OIDC_RESOURCE, or unset it and set HF_TOKEN to a token with write access",
        ) from None
    if os.environ.get("HF_OIDC_RESOURCE"):
        name = "the token exchanged for HF_OIDC_RESOURCE"
    elif (os.environ.get("HF_TOKEN") or "").strip():
        name = "HF_TOKEN"
    elif (os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip():
        name = "HUGGING_FACE_HUB_TOKEN"
    else:
        name = f"the token hf auth login stored in {constants.HF_TOKEN_PATH}"
    return token, name


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(errors.PACKAGE)
    except metadata.PackageNotFoundError:
        return None
