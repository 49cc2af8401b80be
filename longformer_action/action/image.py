"""Which image the action runs: the one a release published (by digest), a given one, or a build."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
