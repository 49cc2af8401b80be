"""``push``: send a checked folder to the Hugging Face Hub (a pull request by default), alone or after ``convert``."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PushError
from ..progress import Progress, human_bytes
from ..publishing.hub import check_push, push_folder


@dataclass(frozen=True)
class PushOptions:
    """Where and how to push (see the command line for their meaning); ``token`` is the one huggingface_hub finds
    (``publishing.hub_client.push_token``), never shown, and ``token_name`` says where it was found."""

    repo_id: str
    revision: str | None = None
    create_pr: bool = True
    private: bool = False
    commit_message: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    token_name: str = "HF_TOKEN"

    def check(self) -> None:
        """Refuse, before any work, what no request could fix: a bad name, no token, a bad title (``PushError``,
        its fix in ``convert``'s option names: this runs before ``convert --push-to-hub`` converts)."""
        try:
            check_push(
                self.repo_id,
                revision=self.revision,
                create_pr=self.create_pr,
                commit_message=self.commit_message,
                token=self.token,
            )
        except PushError as exc:
            raise PushError(exc.message, _convert_names(exc.hint)) from None

    def check_access(self, progress: Progress) -> None:
        """Refuse, before ``convert --push-to-hub`` converts, a push the token cannot make (``PushError`` in
        ``convert``'s option names; see ``publishing.hub_access.check_access``): asks the Hub who the token is."""
        from ..publishing.hub_access import check_access

        assert self.token is not None  # check() came first
        try:
            check_access(
                self.repo_id,
                revision=self.revision,
                create_pr=self.create_pr,
                private=self.private,
                token=self.token,
                token_name=self.token_name,
                progress=progress,
            )
        except PushError as exc:
            raise PushError(_convert_names(exc.message) or exc.message, _convert_names(exc.hint)) from None


def push(model_dir: Path, options: PushOptions, progress: Progress) -> dict[str, Any]:
    """Push ``model_dir`` (a folder ``convert`` wrote and checked) to the Hub; return ``{"hub": ...}``.

    The ``hub`` entry is ``PushResult``'s fields as plain data (``commit_url``, ``pr_url``, ``new_commit`` ...), for
    the step summary and the outputs ``hub-commit-url`` and ``hub-pr-url``.

    Raises:
        PushError: the folder is not checked or changed since (before any request), or the Hub refused the push;
            each with the fix.
    """
    with progress.stage("push", f"Push the folder to {options.repo_id} on the Hugging Face Hub") as stage:
        result = push_folder(
            model_dir,
            options.repo_id,
            revision=options.revision,
            create_pr=options.create_pr,
            private=options.private,
            commit_message=options.commit_message,
            token=options.token,
            token_name=options.token_name,
            progress=progress,
        )
        if not result.new_commit:  # the push's own line said where the files already are
            stage.detail = f"{result.files} files, {human_bytes(result.size)}, nothing uploaded"
        else:
            where = f"pull request #{result.pr_num}" if result.pr_num is not None else result.revision
            stage.detail = f"{result.files} files, {human_bytes(result.size)} in {where}"
    return {"hub": dataclasses.asdict(result)}


def push_after_convert(output: Path, options: PushOptions, progress: Progress) -> dict[str, Any]:
    """``push`` of the folder ``convert`` just put in place; a refusal says the folder stays and how to push it."""
    try:
        return push(output, options, progress)
    except PushError as exc:
        again = f"longformer-convert push --model {output} --repo-id {options.repo_id}"
        raise PushError(
            _convert_names(exc.message) or exc.message,
            f"{_convert_names(exc.hint)}; the checked folder is in place at {output}, so the push alone can be run "
            f"again: {again}"
            if exc.hint
            else f"the checked folder is in place at {output}: push it with {again}",
        ) from None


#: ``push``'s options as ``convert`` names them (its own ``--revision`` is the base model's).
_CONVERT_NAMES = {
    "--repo-id": "--push-to-hub",
    "--revision": "--hub-revision",
    "--create-pr": "--hub-create-pr",
    "--no-create-pr": "--no-hub-create-pr",
    "--private": "--hub-private",
    "--commit-message": "--hub-commit-message",
}
_PUSH_OPTION = re.compile("|".join(re.escape(name) + r"\b" for name in sorted(_CONVERT_NAMES, key=len, reverse=True)))


def _convert_names(hint: str | None) -> str | None:
    # a message or fix that names push's options, for a push that convert --push-to-hub made
    return None if hint is None else _PUSH_OPTION.sub(lambda m: _CONVERT_NAMES[m.group(0)], hint)


def hub_outputs(result: dict[str, Any]) -> dict[str, str]:
    """The GitHub Actions outputs of a push: ``hub-commit-url`` and ``hub-pr-url`` (empty without a pull request)."""
    hub = result.get("hub") or {}
    return {"hub-commit-url": hub.get("commit_url") or "", "hub-pr-url": hub.get("pr_url") or ""}
