"""GitHub Actions: log groups, annotations, outputs, the step summary, masking, file ownership.

Everything here is active only when ``GITHUB_ACTIONS=true``; outside Actions none of it appears.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .choices import DTYPES, GLOBAL_ATTENTION, TASKS
from .progress import Progress

#: GitHub drops a step summary larger than this (it does not truncate it).
SUMMARY_LIMIT = 1024 * 1024


def escape_data(text: str) -> str:
    """Escape a workflow command's message (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (the message escapes plus ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: str) -> str:
    """Format one workflow command line, e.g. ``::error title=T::message``."""
    props = ",".join(f"{k}={escape_property(v)}" for k, v in properties.items() if v)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def heredoc_entry(name: str, value: str) -> str:
    """One ``GITHUB_OUTPUT`` entry in the heredoc form, with a delimiter absent from the value."""
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:  # pragma: no cover - 128 random bits
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


class ActionsProgress(Progress):
    """Progress that also opens a log group per stage."""

    def begin_group(self, title: str) -> None:
        self.line(command("group", title))

    def end_group(self) -> None:
        self.line(command("endgroup"))

    def warning(self, text: str) -> None:
        self.line(command("warning", text))


class Actions:
    """The GitHub Actions runtime as seen from a step (its environment variables)."""

    def __init__(self, environ: Mapping[str, str], stream: TextIO | None = None) -> None:
        self.environ = environ
        self.stream = stream if stream is not None else sys.stderr

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Actions | None:
        """The runtime when ``GITHUB_ACTIONS=true``, else ``None``."""
        environ = os.environ if environ is None else environ
        return cls(environ) if environ.get("GITHUB_ACTIONS") == "true" else None

    def progress(self) -> ActionsProgress:
        """A progress writer with log groups."""
        return ActionsProgress(self.stream)

    def emit(self, line: str) -> None:
        """Write one workflow command line."""
        print(line, file=self.stream, flush=True)

    def mask(self, secret: str | None) -> None:
        """Mask a secret in the log from now on."""
        if secret:
            self.emit(f"::add-mask::{escape_data(secret)}")

    def error(self, message: str, title: str) -> None:
        """One error annotation."""
        self.emit(command("error", message, title=title))

    def set_outputs(self, outputs: Mapping[str, str]) -> None:
        """Append outputs to ``GITHUB_OUTPUT`` (heredoc form, safe for any value)."""
        path = self.environ.get("GITHUB_OUTPUT")
        if not path:
            return
        with open(path, "a", encoding="utf-8") as f:
            for name, value in outputs.items():
                f.write(heredoc_entry(name, value))

    def summary(self, markdown: str) -> None:
        """Append Markdown to the step summary, shortened when over GitHub's 1 MiB limit."""
        path = self.environ.get("GITHUB_STEP_SUMMARY")
        if not path:
            return
        data = markdown.encode("utf-8")
        existing = Path(path).stat().st_size if Path(path).exists() else 0
        room = SUMMARY_LIMIT - existing - 200
        if len(data) > room:
            data = data[: max(room, 0)].decode("utf-8", "ignore").encode() + b"\n\n*(summary shortened)*\n"
        with open(path, "ab") as f:
            f.write(data + b"\n")

    def hand_back(self, *paths: Path | None) -> None:
        """Give files written as root back to the workspace owner, so that later steps can remove them."""
        workspace = self.environ.get("GITHUB_WORKSPACE")
        if os.geteuid() != 0 or not workspace or not Path(workspace).is_dir():
            return
        st = Path(workspace).stat()
        if st.st_uid == 0:
            return
        for path in paths:
            if path is None or not path.exists():
                continue
            for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
                with contextlib.suppress(OSError):
                    os.chown(p, st.st_uid, st.st_gid, follow_symlinks=False)


# --- the action's inputs (run on the runner's host Python by action.yml, standard library only) ----

#: Where the container sees the runner's folders (the mounts the runner itself uses for container steps).
CONTAINER_WORKSPACE = "/github/workspace"
CONTAINER_RUNNER_TEMP = "/github/runner_temp"
#: Where ``checkpoint-artifact`` is downloaded, below ``RUNNER_TEMP``.
ARTIFACT_DOWNLOAD_DIR = "longformer-convert/checkpoint-artifact"

_BOOLEANS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_ARTIFACT_NAME_FORBIDDEN = '":<>|*?\r\n\\/'


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
    _, plan["checkpoint"] = _container_path(
        environ, "checkpoint", checkpoint, relative_to=download if artifact else None
    )
    base = get("base-model")
    if not base:
        raise InputError(
            "base-model", "is empty", "leave it out for allenai/longformer-base-4096, or give a Hub id or a folder"
        )
    if base.startswith("/"):
        base = _container_path(environ, "base-model", base)[1]
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
    plan["report"] = str(Path(plan["model-dir"]) / "conversion-report.json")
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
    return plan


def validate_inputs_main(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> int:
    """The action's first step: mask the token, validate, write the plan to ``GITHUB_OUTPUT``; 0 or 1."""
    environ = os.environ if environ is None else environ
    actions = Actions(environ, stream if stream is not None else sys.stdout)
    actions.mask(action_input(environ, "hf-token"))
    try:
        plan = plan_inputs(environ)
    except InputError as exc:
        actions.error(str(exc), title=f"Invalid input '{exc.name}'")
        title = f"## Longformer conversion: invalid input `{exc.name}`"
        actions.summary(f"{title}\n\n> **Error:** input `{exc.name}` {exc.problem}.\n>\n> **Fix:** {exc.fix}.\n")
        return 1
    actions.set_outputs(plan)
    return 0


# --- which image runs: the published one, a given one, or a build ----------------------------------

#: The file that a release adds to the action's tree: the image that release pushed, by digest.
PUBLISHED_IMAGE_FILE = "action-image.txt"
#: The ``image`` input's value that forces a build from the action's Dockerfile.
BUILD = "build"
#: The tag of an image built by the action.
LOCAL_TAG = "longformer-convert-action:local"
#: Pull attempts, and the pauses between them (seconds).
PULL_DELAYS = (5.0, 15.0)

_DIGEST_REFERENCE = re.compile(r"[a-z0-9][a-z0-9._:/-]*@sha256:[0-9a-f]{64}")
_IMAGE_INPUT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")


@dataclass(frozen=True)
class ImagePlan:
    """Which image the action runs, and why.

    ``source`` is ``published`` (pull ``image``, built and pushed by this release), ``input`` (run the
    ``image`` input as given) or ``build`` (build the action's Dockerfile). ``warning`` is set when the
    tree names an image the action cannot use.
    """

    source: str
    image: str
    reason: str
    warning: str = ""

    def outputs(self) -> dict[str, str]:
        """The plan as step outputs."""
        return {
            "image": self.image,
            "image-source": self.source,
            "image-reason": self.reason,
            "image-warning": self.warning,
            "build": str(self.source == "build").lower(),
        }


def read_published_image(action_path: str | Path) -> str | None:
    """The image named by the action's tree (``action-image.txt``), or ``None`` when it names none.

    The file holds one image reference by digest (``REGISTRY/NAME@sha256:HEX``); blank lines and
    ``#`` comments are ignored. A branch, a commit or a fork has no such file: only release commits do.

    Raises:
        ValueError: the file exists but does not hold exactly one reference by digest.
    """
    path = Path(action_path) / PUBLISHED_IMAGE_FILE
    if not str(action_path) or not path.is_file():
        return None
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    refs = [line for line in lines if line and not line.startswith("#")]
    if not refs:
        return None
    if len(refs) != 1 or not _DIGEST_REFERENCE.fullmatch(refs[0]):
        raise ValueError(f"{PUBLISHED_IMAGE_FILE} should hold one image reference by digest, not {refs!r}")
    return refs[0]


def plan_image(image_input: str, action_path: str | Path) -> ImagePlan:
    """Decide which image runs: the ``image`` input, else the tree's published image, else a build.

    Args:
        image_input: the ``image`` input: empty, ``build``, or an image reference.
        action_path: ``GITHUB_ACTION_PATH``, the action's own tree at the ref the workflow named.

    Returns:
        The plan; it never fails: a tree naming an unusable image yields a build with a warning.
    """
    if image_input == BUILD:
        return ImagePlan("build", "", "`image: build` asks for a build from the action's Dockerfile")
    if image_input:
        return ImagePlan("input", image_input, "the `image` input names it")
    try:
        published = read_published_image(action_path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ImagePlan(
            "build",
            "",
            "the action's tree names no usable published image",
            f"{exc}; building the image from the Dockerfile instead",
        )
    if published:
        return ImagePlan("published", published, f"the image this release published ({PUBLISHED_IMAGE_FILE})")
    return ImagePlan("build", "", "no published image for this ref (a branch, a commit or a fork)")


CommandRunner = Callable[[Sequence[str]], int]


def _run(args: Sequence[str]) -> int:
    # the engine's own output goes to the log (stderr), never to stdout
    return subprocess.run(list(args), stdout=sys.stderr, stderr=sys.stderr, timeout=3600).returncode


def pull_with_retries(
    image: str,
    *,
    run: CommandRunner = _run,
    sleep: Callable[[float], None] = time.sleep,
    delays: Sequence[float] = PULL_DELAYS,
) -> int:
    """``docker pull image``, retried after each pause in ``delays``; the attempts it took, 0 when all failed."""
    for attempt in range(1, len(delays) + 2):
        if run(["docker", "pull", image]) == 0:
            return attempt
        if attempt <= len(delays):
            sleep(delays[attempt - 1])
    return 0


def prepare_image_main(
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    *,
    run: CommandRunner = _run,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """The action's image step: pull the published image (or build when that fails), or build; 0 or 1.

    Reads the plan from ``IMAGE``, ``IMAGE_SOURCE``, ``IMAGE_REASON``, ``IMAGE_WARNING`` and the
    action's tree from ``GITHUB_ACTION_PATH``; writes the ``image`` to run and ``image-path``
    (``pulled``, ``built``, ``given``) to ``GITHUB_OUTPUT``, and the path taken and its time to the
    log and the step summary.
    """
    environ = os.environ if environ is None else environ
    actions = Actions(environ, stream)
    image, source = environ.get("IMAGE", ""), environ.get("IMAGE_SOURCE", "")
    if source not in ("published", "input") or not image:
        source = "build"
    reason = environ.get("IMAGE_REASON", "")
    if environ.get("IMAGE_WARNING"):
        actions.emit(command("warning", environ["IMAGE_WARNING"], title="Published image not usable"))
    start = clock()
    if source == "published":
        actions.emit(command("group", f"docker pull {image}"))
        attempts = pull_with_retries(image, run=run, sleep=sleep)
        actions.emit(command("endgroup"))
        if attempts:
            path = "pulled"
            if attempts > 1:
                reason += f"; {attempts} attempts"
        else:
            actions.emit(
                command(
                    "warning",
                    f"could not pull {image} after {len(PULL_DELAYS) + 1} attempts; building the image from "
                    "the action's Dockerfile instead (slower). Set `image: build` to skip the pull.",
                    title="Published image not pulled",
                )
            )
            source, reason = "build", f"pulling the published image {image} failed"
    if source == "build":
        image, path = LOCAL_TAG, "built"
        context = environ.get("GITHUB_ACTION_PATH", ".")
        actions.emit(command("group", f"docker build {context}"))
        status = run(["docker", "build", "--tag", image, context])
        actions.emit(command("endgroup"))
        if status != 0:
            actions.error(
                f"docker build of {context} failed (exit {status}); see the log group above",
                title="Image build failed",
            )
            return 1
    elif source == "input":
        path = "given"
    seconds = clock() - start
    verb = {"pulled": "Pulled", "built": "Built from the action's Dockerfile", "given": "Running"}[path]
    line = f"{verb} `{image}` in {seconds:.1f} s: {reason}."
    actions.emit(f"image: {line.replace('`', '')}")
    actions.summary(f"**Image:** {line}\n")
    actions.set_outputs({"image": image, "image-path": path, "image-seconds": f"{seconds:.1f}"})
    return 0


if __name__ == "__main__":  # pragma: no cover - run by action.yml
    commands = {"validate-inputs": validate_inputs_main, "prepare-image": prepare_image_main}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m longformer_action.gha {{{','.join(commands)}}}")
    sys.exit(commands[sys.argv[1]]())
