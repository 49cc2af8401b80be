"""action.yml and the workflows against GitHub's schemas, actionlint and shellcheck: zero findings."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
#: Workflows only the act tests run (tests/act/), checked the same way
ACT_WORKFLOWS = sorted((ROOT / "tests" / "act").glob("*.yml"))
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}:{os.environ.get('PATH', '')}")
    assert path, f"{name} is missing: pip install -e '.[test]'"
    return path


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env)


def test_there_are_workflows():
    assert {w.name for w in WORKFLOWS} >= {"self-test.yml", "release.yml"}


def test_action_against_github_schema():
    result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", "action.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflows_against_github_schema(schema):
    result = _run(_tool("check-jsonschema"), "--builtin-schema", schema, *WORKFLOWS, *ACT_WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def _actionlint(cwd: Path, *files: Path) -> list[dict]:
    result = _run(_tool("actionlint"), "-format", "{{json .}}", *files, cwd=cwd)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout or "[]")


def test_actionlint_finds_nothing():
    _tool("shellcheck")  # actionlint runs it on every run: script when it is on PATH
    findings = _actionlint(ROOT) + _actionlint(ROOT, *ACT_WORKFLOWS)
    assert findings == [], "\n".join(f"{f['filepath']}:{f['line']}: {f['message']}" for f in findings)


def test_actionlint_would_report_an_old_runtime_and_an_injection(tmp_path):
    # the linters above must be able to fail: the same setup reports the classic mistakes
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/upload-artifact@v4\n        with: {name: x, path: y}\n"
        '      - run: echo "${{ github.event.head_commit.message }}" $UNQUOTED\n'
    )
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    kinds = {f["kind"] for f in _actionlint(tmp_path)}
    assert {"action", "expression", "shellcheck"} <= kinds


def test_action_scripts_pass_shellcheck(tmp_path):
    for i, step in enumerate(s for s in ACTION["runs"]["steps"] if "run" in s):
        script = tmp_path / f"step{i}.sh"
        script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + re.sub(r"\$\{\{[^}]*\}\}", "X", step["run"]))
        result = _run(_tool("shellcheck"), script)
        assert result.returncode == 0, f"{step['name']}:\n{result.stdout}"


def _all_uses() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "action.yml", *WORKFLOWS]:
        for line in path.read_text().splitlines():
            match = re.search(r"uses:\s*(\S+)(.*)$", line)
            if match:
                found.append((match.group(1), match.group(2).strip()))
    return found


def test_every_remote_action_is_pinned_by_commit_with_its_version():
    remote = [(ref, comment) for ref, comment in _all_uses() if not ref.startswith("./")]
    assert remote
    for ref, comment in remote:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"# v\d+(\.\d+)*", comment), (ref, comment)
    # one SHA per action: no two versions of the same action in the repository
    shas: dict[str, set[str]] = {}
    for ref, _ in remote:
        name, sha = ref.split("@")
        shas.setdefault(name, set()).add(sha)
    assert all(len(s) == 1 for s in shas.values()), shas


def test_every_job_has_a_timeout_and_minimal_permissions():
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        assert workflow["permissions"] == {}, path.name
        for name, job in workflow["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 60, (path.name, name)
            permissions = job.get("permissions", {})
            assert set(permissions.values()) <= {"read", "write"}
            writes = {k for k, v in permissions.items() if v == "write"}
            # the release pushes the image (packages) and moves its tags to the commit naming it (contents)
            allowed = {"packages", "contents"} if path.name == "release.yml" else set()
            assert writes <= allowed, (path.name, name, writes)


def test_action_declares_the_contract():
    inputs = ACTION["inputs"]
    assert list(inputs) == [
        "checkpoint",
        "checkpoint-artifact",
        "base-model",
        "revision",
        "task",
        "labels",
        "drop",
        "keep",
        "global-attention",
        "dtype",
        "output-dir",
        "check",
        "atol",
        "artifact-name",
        "upload",
        "retention-days",
        "hf-token",
        "hub-repo",
        "hub-create-pr",
        "hub-private",
        "hub-revision",
        "hub-token",
        "attest",
        "image",
    ]
    assert set(ACTION["outputs"]) == {
        "model-dir",
        "report",
        "max-abs-diff",
        "artifact-id",
        "artifact-url",
        "artifact-digest",
        "hub-commit-url",
        "hub-pr-url",
        "image",
    }
    defaults = {name: inputs[name]["default"] for name in ("hub-repo", "hub-create-pr", "hub-private", "attest")}
    assert defaults == {"hub-repo": "", "hub-create-pr": "true", "hub-private": "false", "attest": "false"}
    assert inputs["hub-revision"]["default"] == "main"
    for name, spec in inputs.items():
        assert spec["description"].endswith("."), name
        assert name == "checkpoint" or isinstance(spec.get("default"), str), name  # quoted defaults
    assert inputs["checkpoint"]["required"] is True
    assert ACTION["runs"]["using"] == "composite"


def test_inputs_reach_scripts_only_through_env():
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (path.name, step.get("name"))
    # the token reaches the container by environment name only, never on its command line
    convert = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "convert")
    assert convert["env"]["HF_TOKEN"] == "${{ inputs.hf-token }}"
    assert re.search(r"--env HF_TOKEN(\s|$)", convert["run"])
    # the write token reaches the push's container alone, as its HF_TOKEN, by name
    assert convert["env"]["HUB_TOKEN"] == "${{ inputs.hub-token }}"
    assert [line.strip() for line in convert["run"].splitlines() if "HUB_TOKEN" in line] == [
        'HF_TOKEN=$HUB_TOKEN run_image "${push[@]}" || status=$?'
    ]


def _step(uses: str) -> dict:
    return next(s for s in ACTION["runs"]["steps"] if s.get("uses", "").startswith(uses))


def test_the_attest_step_signs_the_folders_checksums_when_asked():
    steps = ACTION["runs"]["steps"]
    attest = _step("actions/attest@")
    assert attest["uses"] == "actions/attest@1e69f48acb82d1966a394da916b4c1698aa569d6"
    line = next(line for line in (ROOT / "action.yml").read_text().splitlines() if "actions/attest@" in line)
    assert line.endswith("# v4.2.2"), "pinned by commit with its version, like the artifact actions"
    # once the folder is converted and checked, even when the push after it was refused; never after a cancel
    assert attest["if"] == (
        "${{ !cancelled() && steps.plan.outputs.attest == 'true' && steps.convert.outputs.converted == 'true' }}"
    )
    assert attest["with"] == {"subject-checksums": "${{ steps.plan.outputs.checksums }}"}, "provenance, no predicate"
    assert steps.index(attest) > steps.index(next(s for s in steps if s.get("id") == "convert"))


def test_the_upload_keeps_the_checked_folder_when_the_push_is_refused():
    upload = _step("actions/upload-artifact@")
    assert upload["if"] == (
        "${{ !cancelled() && steps.plan.outputs.upload == 'true' && steps.convert.outputs.converted == 'true' }}"
    )
    # the convert step says the folder is in place only after the conversion's own exit status 0, before the push
    run = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "convert")["run"]
    converted = run.index('[[ $status != 0 ]] || echo "converted=true" >> "$GITHUB_OUTPUT"')
    assert run.index('run_image "${args[@]}"') < converted < run.index("push=(push --model")


def _readme_workflow(heading: str) -> dict:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    return next(yaml.safe_load(b) for b in blocks if b.startswith("jobs:"))


def test_the_readmes_attest_workflow_passes_actionlint_with_the_permissions_it_needs(tmp_path):
    jobs = _readme_workflow("Attest the files")["jobs"]
    assert jobs["convert"]["permissions"] == {"contents": "read", "id-token": "write", "attestations": "write"}
    verify = jobs["verify"]["steps"][-1]
    assert verify["run"].startswith("gh attestation verify longformer-model/") and '-o "$OWNER"' in verify["run"]
    # a repository holding the action and the README's jobs, with the action used as `./`: actionlint checks the
    # permission scopes, the `with:` inputs against action.yml, the expressions and the scripts
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    pinned = {
        "actions/checkout@v5": "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd",
        "actions/download-artifact@v8": _step("actions/download-artifact@")["uses"],
    }
    for job in jobs.values():
        for step in job["steps"]:
            if "longformer-convert-action" in step.get("uses", ""):
                step["uses"] = "./"
            step["uses"] = pinned.get(step.get("uses"), step.get("uses"))
            if step["uses"] is None:
                del step["uses"]
    workflow = {"name": "attest", "on": "push", "permissions": {}, "jobs": jobs}
    (tmp_path / ".github" / "workflows" / "attest.yml").write_text(yaml.safe_dump(workflow, sort_keys=False))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert _actionlint(tmp_path) == []
    jobs["convert"]["steps"][-1]["with"]["atest"] = True  # the same check fails on an input action.yml lacks ...
    jobs["convert"]["permissions"]["attestation"] = "write"  # ... and on a misspelt scope
    (tmp_path / ".github" / "workflows" / "attest.yml").write_text(yaml.safe_dump(workflow, sort_keys=False))
    assert {f["kind"] for f in _actionlint(tmp_path)} >= {"permissions", "action"}


def test_upload_uses_the_official_action_as_the_contract_says():
    upload = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "upload")
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["compression-level"] == 0
    assert upload["with"]["if-no-files-found"] == "error"
    assert "upload" in upload["if"]
    download = next(s for s in ACTION["runs"]["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["if"] == "inputs.checkpoint-artifact != ''"
