"""The action's inputs, checked and turned into the convert step's arguments (standard library only)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..registry.files import CHECKSUMS_NAME, REPORT_NAME
from ..registry.names import DTYPES, GLOBAL_ATTENTION, TASKS
from .image import _IMAGE_INPUT, BUILD, plan_image

#: Where the container sees the runner's folders (the mounts the runner itself uses for container steps).
CONTAINER_WORKSPACE = "/github/workspace"


CONTAINER_RUNNER_TEMP = "/github/runner_temp"


#: Where ``checkpoint-artifact`` is downloaded, below ``RUNNER_TEMP``.
ARTIFACT_DOWNLOAD_DIR = "longformer-convert/checkpoint-artifact"


_BOOLEANS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


_ARTIFACT_NAME_FORBIDDEN = '":<>|*?\r\n\\/'


#: One side of a Hub repository id, as huggingface_hub's ``validate_repo_id`` reads it (letters, digits, ``-``,
#: ``_``, ``.``; at most 96), with the rules below it; the Hub itself is the last word.
_HUB_PART = re.compile(r"[A-Za-z0-9_.-]{1,96}")


class InputError(ValueError):
    """An action input with a bad value: ``name`` is the input, the message says what is wrong and the fix."""

    def __init__(self, name: str, problem: str, fix: str) -> None:
        self.name = name
        self.problem = problem
        self.fix = fix
        super().__init__(f"Input '{name}' {problem}. Fix: {fix}")


def action_input(environ: Mapping[str, str], name: str) -> str:
    """An input as the runner passes it: ``INPUT_<NAME>``, spaces as ``_``, upper-cased, hyphens kept."""
    return environ.get(f"INPUT_{name.replace(' ', '_').upper()}", "").strip()


def _boolean(environ: Mapping[str, str], name: str) -> bool:
    value = action_input(environ, name)
    if value not in _BOOLEANS:
        raise InputError(name, f"is '{value}', not a boolean", f"write `{name}: true` or `{name}: false`")
    return _BOOLEANS[value]


def _container_path(
    environ: Mapping[str, str], name: str, value: str, *, relative_to: str | None = None
) -> tuple[str, str]:
    """(host path, container path) of a path input; relative paths are relative to the workspace."""
    workspace = environ.get("GITHUB_WORKSPACE", "")
    runner_temp = environ.get("RUNNER_TEMP", "")
    path = Path(value)
    if relative_to is not None:
        if path.is_absolute() or ".." in path.parts:
            raise InputError(
                name,
                f"is '{value}', which is not a path inside the artifact",
                "give the file's path relative to the artifact's root",
            )
        rel = Path(os.path.normpath(path))
        return str(Path(relative_to) / rel), f"{CONTAINER_RUNNER_TEMP}/{ARTIFACT_DOWNLOAD_DIR}/{rel.as_posix()}"
    host = Path(os.path.normpath(path if path.is_absolute() else Path(workspace) / path))
    roots = [(Path(workspace), CONTAINER_WORKSPACE), (Path(runner_temp), CONTAINER_RUNNER_TEMP)]
    for root, mount in roots:
        if str(root) in ("", ".") or not root.is_absolute():
            continue
        root = Path(os.path.normpath(root))
        if host == root or root in host.parents:
            rel = host.relative_to(root).as_posix()
            return str(host), mount if rel == "." else f"{mount}/{rel}"
    raise InputError(
        name,
        f"is '{value}', outside the workspace and RUNNER_TEMP, so the conversion container cannot see it",
        "give a path relative to the workspace (where actions/checkout puts the repository)",
    )


def _comma_list(environ: Mapping[str, str], name: str, empty: str, fix: str) -> str:
    """A comma-separated input with its items stripped; an empty item is an ``InputError``."""
    value = action_input(environ, name)
    items = [item.strip() for item in value.split(",")] if value else []
    if not all(items):
        raise InputError(name, f"is '{value}', which has {empty}", fix)
    return ",".join(items)


def plan_inputs(environ: Mapping[str, str]) -> dict[str, str]:
    """Validate the action's inputs and plan the conversion: the values later steps use, as strings.

    Args:
        environ: the step's environment: ``INPUT_*`` (hyphens kept), ``GITHUB_WORKSPACE``, ``RUNNER_TEMP``.

    Returns:
        Step outputs: ``checkpoint`` and ``output`` (container paths), ``base-model``, ``model-dir`` and
        ``report`` (host paths), ``download-path``, ``check``, ``upload``, ``build`` (``true``/``false``) ...

    Raises:
        InputError: the first bad input, with its fix.
    """
    get = lambda name: action_input(environ, name)  # noqa: E731
    plan: dict[str, str] = {}
    checkpoint, artifact = get("checkpoint"), get("checkpoint-artifact")
    if not checkpoint:
        raise InputError(
            "checkpoint",
            "is empty; it is required",
            "give the .ckpt file's path, e.g. `checkpoint: checkpoints/best.ckpt` "
            "(its path inside `checkpoint-artifact` when that is set)",
        )
    download = str(Path(environ.get("RUNNER_TEMP", "")) / ARTIFACT_DOWNLOAD_DIR)
    plan["download-path"] = download if artifact else ""
    host_checkpoint, plan["checkpoint"] = _container_path(
        environ, "checkpoint", checkpoint, relative_to=download if artifact else None
    )
    # a workspace path is known now: a missing one fails here, before the image is pulled or built
    if not artifact and environ.get("GITHUB_WORKSPACE") and not Path(host_checkpoint).exists():
        raise InputError(
            "checkpoint",
            f"is '{checkpoint}', which is not in the workspace",
            "give its path relative to the repository's root as actions/checkout placed it, or pass an earlier "
            "job's artifact with `checkpoint-artifact` (then `checkpoint` is the path inside it)",
        )
    base = get("base-model")
    if not base:
        raise InputError(
            "base-model", "is empty", "leave it out for allenai/longformer-base-4096, or give a Hub id or a folder"
        )
    host_base = None
    if base.startswith("/"):
        host_base, base = _container_path(environ, "base-model", base)
    elif environ.get("GITHUB_WORKSPACE") and (Path(environ["GITHUB_WORKSPACE"]) / base).exists():
        host_base = str(Path(os.path.normpath(Path(environ["GITHUB_WORKSPACE"]) / base)))
    plan["base-model"] = base
    plan["revision"] = get("revision")
    task = get("task")
    if task not in TASKS:
        raise InputError(
            "task",
            f"is '{task}', not one of {', '.join(TASKS)}",
            "leave it out (`auto` reads the task from the checkpoint's head) or write e.g. `task: text-classification`",
        )
    plan["task"] = task
    plan["labels"] = _comma_list(
        environ, "labels", "an empty label", "write the names in output order, e.g. `labels: NEG,POS`"
    )
    names = plan["labels"].split(",") if plan["labels"] else []
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(
            "labels",
            f"is '{plan['labels']}', which names {', '.join(twice)} twice",
            "give each output its own name, in output order, e.g. `labels: NEG,NEU,POS`",
        )
    plan["drop"] = _comma_list(
        environ, "drop", "an empty prefix", "write the key prefixes comma-separated, e.g. `drop: loss_fn.,class_prior`"
    )
    plan["keep"] = _comma_list(
        environ, "keep", "an empty prefix", "write the key prefixes comma-separated, e.g. `keep: crf.`"
    )
    attention = get("global-attention")
    if attention not in GLOBAL_ATTENTION:
        raise InputError(
            "global-attention",
            f"is '{attention}', not one of {', '.join(GLOBAL_ATTENTION)}",
            "leave it out for the task's default, or write e.g. `global-attention: first-token`",
        )
    plan["global-attention"] = attention
    dtype = get("dtype")
    if dtype not in DTYPES:
        raise InputError(
            "dtype",
            f"is '{dtype}', not one of {', '.join(DTYPES)}",
            f"write e.g. `dtype: float16`; one of {', '.join(DTYPES)}",
        )
    plan["dtype"] = dtype
    output = get("output-dir")
    if not output:
        raise InputError("output-dir", "is empty", "give a folder relative to the workspace, e.g. `output-dir: model`")
    plan["model-dir"], plan["output"] = _container_path(environ, "output-dir", output)
    if plan["output"] in (CONTAINER_WORKSPACE, CONTAINER_RUNNER_TEMP):
        raise InputError(
            "output-dir",
            f"is '{output}', the workspace itself",
            "give a new folder inside it, e.g. `output-dir: model`",
        )
    if Path(plan["output"]) in (Path(plan["checkpoint"]), *Path(plan["checkpoint"]).parents):
        raise InputError(
            "output-dir",
            f"is '{output}', which holds the checkpoint '{checkpoint}': the converted folder would replace it",
            "give a new folder apart from the checkpoint, e.g. `output-dir: longformer-model`",
        )
    if host_base is not None and Path(plan["model-dir"]) in (Path(host_base), *Path(host_base).parents):
        raise InputError(
            "output-dir",
            f"is '{output}', which holds the base model's folder '{get('base-model')}': the converted folder would "
            "replace it",
            "give a new folder apart from the base model, e.g. `output-dir: longformer-model`",
        )
    plan["report"] = str(Path(plan["model-dir"]) / REPORT_NAME)
    plan["check"] = str(_boolean(environ, "check")).lower()
    atol = get("atol")
    if atol:
        try:
            ok = float(atol) > 0
        except ValueError:
            ok = False
        if not ok:
            raise InputError(
                "atol",
                f"is '{atol}', not a positive number",
                "write e.g. `atol: 1e-4`, or leave it out for the dtype's default",
            )
    plan["atol"] = atol
    plan["upload"] = str(_boolean(environ, "upload")).lower()
    name = get("artifact-name")
    bad = sorted({c for c in name if c in _ARTIFACT_NAME_FORBIDDEN})
    if plan["upload"] == "true" and (not name or bad):
        shown = " ".join(repr(c) for c in bad)
        problem = "is empty" if not name else f"is '{name}', which holds {shown}"
        raise InputError(
            "artifact-name",
            problem,
            'choose a name without " : < > | * ? \\r \\n \\ /, e.g. `artifact-name: longformer-model`',
        )
    plan["artifact-name"] = name
    days = get("retention-days")
    if days and not (days.isdigit() and 1 <= int(days) <= 90):
        raise InputError(
            "retention-days",
            f"is '{days}', not a whole number of days from 1 to 90",
            "write e.g. `retention-days: 7`, or leave it out for the repository's default",
        )
    plan["retention-days"] = days
    image = get("image")
    if image and image != BUILD and not _IMAGE_INPUT.fullmatch(image):
        raise InputError(
            "image",
            f"is '{image}', not an image reference",
            "write e.g. `image: ghcr.io/owner/longformer-convert-action:v1`, `image: build`, or leave it out",
        )
    plan.update(plan_image(image, environ.get("GITHUB_ACTION_PATH", "")).outputs())
    plan.update(_hub_plan(environ, checked=plan["check"] == "true"))
    plan["attest"] = str(_boolean(environ, "attest")).lower()
    plan["checksums"] = str(Path(plan["model-dir"]) / CHECKSUMS_NAME)
    return plan


#: The annotation's title of an input that is valid but will not do what it seems to ask for.
UNUSED_TITLE = "Input '{name}' is not used"


def input_warnings(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(title, message)`` of each input that is valid but will do nothing, for a warning annotation.

    ``hub-token`` without ``hub-repo``: nothing is pushed (``hub-repo`` is what asks for the push), so a workflow
    that meant to publish the model would succeed without doing it.

    Args:
        environ: the step's environment (``INPUT_*``), already validated by ``plan_inputs``.
    """
    warnings = []
    base, workspace = action_input(environ, "base-model"), environ.get("GITHUB_WORKSPACE", "")
    parent = Path(workspace, base).parent if workspace and base and not base.startswith("/") else None
    if parent is not None and "/" in base and not Path(workspace, base).exists() and parent.is_dir():
        # OWNER/NAME is a Hub id, unless OWNER is a folder of the workspace: then NAME is likely mistyped
        warnings.append(
            (
                "Input 'base-model' is read as a Hub id",
                f"Input 'base-model' is '{base}': no such folder in the workspace, though '{Path(base).parent}' is "
                "one, so it is read as a Hugging Face Hub id. Fix: check the folder's name (paths are relative to the "
                "workspace, also with `checkpoint-artifact`), or ignore this if it is the Hub id you meant.",
            )
        )
    if action_input(environ, "hub-token") and not action_input(environ, "hub-repo"):
        warnings.append(
            (
                UNUSED_TITLE.format(name="hub-token"),
                "Input 'hub-token' is set but 'hub-repo' is empty, so nothing will be pushed to the Hugging Face Hub. "
                "Fix: set `hub-repo: OWNER/NAME` to push the checked folder there, or remove `hub-token`.",
            )
        )
    return warnings


def _hub_plan(environ: Mapping[str, str], *, checked: bool) -> dict[str, str]:
    """The push's inputs: ``hub-repo`` (empty: no push), ``hub-revision``, ``hub-create-pr``, ``hub-private``;
    ``hub-token`` must be set when ``hub-repo`` is (it is masked before this runs and never planned)."""
    get = lambda name: action_input(environ, name)  # noqa: E731
    plan = {
        "hub-repo": get("hub-repo"),
        "hub-revision": get("hub-revision"),
        "hub-create-pr": str(_boolean(environ, "hub-create-pr")).lower(),
        "hub-private": str(_boolean(environ, "hub-private")).lower(),
    }
    repo = plan["hub-repo"]
    if not repo:
        return plan
    owner, _, name = repo.partition("/")
    broken = [
        part
        for part in (owner, name)
        if not _HUB_PART.fullmatch(part) or part[0] in "-." or part[-1] in "-." or "--" in part or ".." in part
    ]
    if repo.count("/") != 1 or broken or name.endswith(".git"):
        raise InputError(
            "hub-repo",
            f"is '{repo}', not a Hugging Face Hub repository OWNER/NAME",
            "write e.g. `hub-repo: my-org/longformer-qa` (letters, digits, '-', '_' and '.', at most 96 on each side, "
            "not starting or ending with '-' or '.', without '--' or '..')",
        )
    if not get("hub-token"):
        raise InputError(
            "hub-token",
            "is empty, and `hub-repo` is set: pushing needs a token with write access to " + owner,
            "pass a write token from a secret, e.g. `hub-token: ${{ secrets.HF_WRITE_TOKEN }}`",
        )
    if not checked:
        raise InputError(
            "check",
            "is false, and `hub-repo` is set: only a checked folder is pushed",
            "leave `check` at true, or leave out `hub-repo`",
        )
    revision = plan["hub-revision"]
    if not revision or any(c.isspace() for c in revision):
        raise InputError(
            "hub-revision",
            f"is '{revision}', not a branch name",
            "leave it out for main, or write e.g. `hub-revision: dev`",
        )
    if plan["hub-create-pr"] == "true" and revision.startswith("refs/"):
        raise InputError(
            "hub-revision",
            f"is '{revision}', and a pull request is opened against a branch",
            "give a branch, or set `hub-create-pr: false` to push onto that pull request",
        )
    return plan
