"""The action's image step: pull the published image (with retries) or build the Dockerfile (standard library only)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from .image import LOCAL_TAG, PULL_DELAYS, CommandRunner, _run, pull_with_retries
from .toolkit import Actions

#: Messages, as templates (what failed, the usual cause, the fix).
UNUSABLE_TITLE = "Published image not usable"
NOT_PULLED_TITLE = "Published image not pulled"
NOT_PULLED = (
    "could not pull {image} after {attempts} attempts; building the image from the action's Dockerfile instead "
    "(slower). Set `image: build` to skip the pull."
)
BUILD_FAILED_TITLE = "Image build failed"
BUILD_FAILED = "docker build of {context} failed (exit {status}); see the log group above"
#: The log's and the step summary's line, by the path taken.
DONE = {
    "pulled": "Pulled `{image}` in {seconds:.1f} s: {reason}.",
    "built": "Built from the action's Dockerfile `{image}` in {seconds:.1f} s: {reason}.",
    "given": "Running `{image}` in {seconds:.1f} s: {reason}.",
}


def main(
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
        actions.warning(environ["IMAGE_WARNING"], title=UNUSABLE_TITLE)
    start = clock()
    if source == "published":
        with actions.group(f"docker pull {image}"):
            attempts = pull_with_retries(image, run=run, sleep=sleep)
        if attempts:
            path = "pulled"
            if attempts > 1:
                reason += f"; {attempts} attempts"
        else:
            actions.warning(NOT_PULLED.format(image=image, attempts=len(PULL_DELAYS) + 1), title=NOT_PULLED_TITLE)
            source, reason = "build", f"pulling the published image {image} failed"
    if source == "build":
        image, path = LOCAL_TAG, "built"
        context = environ.get("GITHUB_ACTION_PATH", ".")
        with actions.group(f"docker build {context}"):
            status = run(["docker", "build", "--tag", image, context])
        if status != 0:
            actions.error(BUILD_FAILED.format(context=context, status=status), title=BUILD_FAILED_TITLE)
            return 1
    elif source == "input":
        path = "given"
    seconds = clock() - start
    line = DONE[path].format(image=image, seconds=seconds, reason=reason)
    actions.emit(f"image: {line.replace('`', '')}")
    actions.append_summary(f"**Image:** {line}\n")
    actions.set_outputs({"image": image, "image-path": path, "image-seconds": f"{seconds:.1f}"})
    return 0


if __name__ == "__main__":  # pragma: no cover - run by action.yml
    sys.exit(main())
