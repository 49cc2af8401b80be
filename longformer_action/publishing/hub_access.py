"""Check, before a conversion, that the token may make the push: who the token is, and the repository it goes to.

``convert --push-to-hub`` asks this before converting, so that a token that cannot write to OWNER stops the run in
seconds rather than after the conversion; the error is the line the push itself would give.
"""

from __future__ import annotations

from collections.abc import Callable

from ..progress import Progress
from .hub_answers import forbidden, public_repository, status_of, transient
from .hub_client import HubClient


def check_access(
    repo_id: str,
    *,
    revision: str | None,
    create_pr: bool,
    private: bool,
    token: str,
    token_name: str = "HF_TOKEN",
    endpoint: str | None = None,
    progress: Progress,
    sleep: Callable[[float], None] | None = None,
) -> None:
    """Refuse, before a conversion, a push the token cannot make, with the line the push itself would give.

    Asks the Hub who the token is (``whoami``: the user, its organisations with the user's role in each, and the
    token's role) and, when the namespace is neither the user's nor one of its organisations' or ``private`` is asked
    for, whether the repository exists (``repo_info``). Refused: a token the Hub does not accept (401); a read token; a
    missing repository in a namespace the user may not create in; a commit to a branch of another namespace's
    repository (a pull request is allowed: anyone may open one); ``private`` for a repository that exists and is
    public. A fine-grained token's scopes are left to the push, whose answer names them. When the Hub cannot be asked
    (a network failure, 5xx after the retries), the log says so and the conversion goes on.

    Args:
        repo_id, revision, create_pr, private: the push (``revision`` ``None``: main).
        token, token_name: the token (``hub_client.push_token``) and how messages name it.
        endpoint: the Hub (default: huggingface_hub's).
        progress: where the log line goes.
        sleep: waits between retries (default ``time.sleep``).

    Raises:
        PushError: the push would be refused.
    """
    client = HubClient(
        repo_id,
        revision=revision,
        create_pr=create_pr,
        token=token,
        token_name=token_name,
        endpoint=endpoint,
        progress=progress,
        sleep=sleep,
    )
    owner = client.owner
    try:
        me = client.retrying("the token's user", client.api.whoami)
    except Exception as exc:
        if status_of(exc) == 401:
            raise client.failure(exc, "checking the token") from None
        _unchecked(client, exc, f"{token_name} could not be checked")
        return
    user = str(me.get("name") or "")
    role = str(((me.get("auth") or {}).get("accessToken") or {}).get("role") or "")
    say = dict(repo_id=repo_id, create_pr=create_pr, token_name=token_name)
    if role == "read":
        raise client.error(*forbidden((user, role), "", "", **say))
    orgs = {str(o.get("name")) for o in me.get("orgs") or [] if o.get("roleInOrg") != "read"}
    foreign = role == "write" and owner != user and owner not in orgs  # a classic write token outside its namespaces
    if foreign or private:
        try:
            info = client.retrying("the repository's info", lambda: client.api.repo_info(repo_id))
        except Exception as exc:
            if status_of(exc) != 404:
                _unchecked(client, exc, f"{repo_id} could not be read")
                return
            info = None
        why = f"{owner} is neither {user} nor an organisation {user} may write in"
        if foreign and info is None:
            raise client.error(*forbidden((user, role), "creating the repository", why, **say))
        if foreign and not create_pr:
            raise client.error(*forbidden((user, role), f"committing to {client.revision}", why, **say))
        if private and info is not None and not info.private:
            raise client.error(*public_repository(repo_id, client.endpoint))
    member = f", a member of {owner}" if owner in orgs else ""
    client.say(f"{token_name} is {user}'s {role or 'unknown'} token{member}; the push comes after the check")


def _unchecked(client: HubClient, exc: BaseException, what: str) -> None:
    # the Hub could not answer: the conversion goes on, and the push meets the answer; a bug is raised
    status, cause = status_of(exc), transient(exc)
    if status is None and cause is None:
        raise exc
    client.say(f"{what} before converting ({cause or f'the Hub answered {status}'}); the push will try after the check")
