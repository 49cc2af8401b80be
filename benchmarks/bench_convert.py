#!/usr/bin/env python
"""Benchmark ``longformer-convert convert`` against the origin conversion script.

Makes longformer-base-4096 and longformer-large-4096 shaped Lightning checkpoints (one real
``Trainer`` step with AdamW, so the file holds weights and both Adam moments), then measures, in
one run and alternating per repetition, each variant as a fresh process:

* ``origin``: the origin script (transformers' ``convert_longformer_original_pytorch_lightning_to_pytorch``)
  with its pooler crash fixed and the models built from the local config instead of downloaded;
* ``ours --no-check``: ``longformer-convert convert --no-check``;
* ``ours``: ``longformer-convert convert`` (with the forward-pass and per-tensor check).

Wall time and peak RSS are those of the whole child process (``os.wait4``'s resource usage, the
kernel's own high-water mark). See ``benchmarks/README.md``.

Usage::

    python benchmarks/bench_convert.py --quick
    python benchmarks/bench_convert.py --sizes base,large --repeat 3 --json-out bench-out/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30

#: Shapes of allenai/longformer-base-4096 and allenai/longformer-large-4096 (``quick``: a smoke run).
COMMON = {
    "vocab_size": 50265,
    "max_position_embeddings": 4098,
    "attention_window": 512,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "base": {
        **COMMON,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "large": {
        **COMMON,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
    "quick": {
        "vocab_size": 1000,
        "max_position_embeddings": 1026,
        "attention_window": 64,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
    },
}
VARIANTS = ("origin", "ours --no-check", "ours")
STAGE_LINE = re.compile(r"^([a-z][\w-]*): (.*) \((\d+(?:\.\d+)?) s\)$")


# --- child process: make a checkpoint -------------------------------------------------------------


def train_length(config: dict[str, Any]) -> int:
    """The training sequence length: one attention window, at most 512 tokens."""
    return min(512, int(config["attention_window"]))


def make_checkpoint(size: str, folder: Path) -> None:
    """Write ``folder/base/config.json`` and ``folder/checkpoint.ckpt`` (one Trainer step, AdamW)."""
    from transformers import LongformerConfig

    from longformer_action.demo.modules import batches, make_module
    from longformer_action.demo.training import fit_and_save

    config = CONFIGS[size]
    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    LongformerConfig(**config).save_pretrained(base)
    module = make_module(base, layout="origin")
    made = batches(base, 1, batch_size=1, length=train_length(config))
    partial = folder / "checkpoint.ckpt.partial"
    fit_and_save(module, made, partial)
    os.replace(partial, folder / "checkpoint.ckpt")
    weights = sum(p.numel() * p.element_size() for p in module.state_dict().values())
    meta = {"size": size, "config": config, "train_length": train_length(config), "weight_bytes": weights}
    (folder / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")


# --- child process: the origin algorithm ----------------------------------------------------------


def origin_convert(base_folder: str, ckpt_path: str, dump_folder: str) -> None:
    """The origin script's ``convert_longformer_qa_checkpoint_to_pytorch``, with two changes.

    1. ``LongformerModel.from_pretrained(hub id)`` and ``LongformerForQuestionAnswering.from_pretrained(hub id)``
       become the same classes built from the local config (random init, no download).
    2. The pooler fix: ``LongformerForQuestionAnswering`` has no pooler, so the encoder's
       ``pooler.*`` keys are left out of the ``load_state_dict`` that crashed on them.

    Otherwise the same: the whole checkpoint is unpickled (``weights_only=False``), loaded into the
    LightningModule, copied into the QA model and written with ``save_pretrained``.
    """
    import pytorch_lightning as pl
    import torch
    from torch import nn
    from transformers import LongformerConfig, LongformerForQuestionAnswering, LongformerModel

    class LightningModel(pl.LightningModule):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model
            self.num_labels = 2
            self.qa_outputs = nn.Linear(self.model.config.hidden_size, self.num_labels)

        def forward(self) -> None:
            pass

    config = LongformerConfig.from_pretrained(base_folder)
    longformer = LongformerModel(config)
    lightning_model = LightningModel(longformer)

    ckpt = torch.load(ckpt_path, map_location=torch.device("cpu"), weights_only=False)
    lightning_model.load_state_dict(ckpt["state_dict"])

    longformer_for_qa = LongformerForQuestionAnswering(config)

    encoder_state = {k: v for k, v in lightning_model.model.state_dict().items() if not k.startswith("pooler.")}
    longformer_for_qa.longformer.load_state_dict(encoder_state)
    longformer_for_qa.qa_outputs.load_state_dict(lightning_model.qa_outputs.state_dict())
    longformer_for_qa.eval()

    longformer_for_qa.save_pretrained(dump_folder)
    print(f"Conversion successful. Model saved under {dump_folder}")


# --- measuring --------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment for measured processes: offline, and not in GitHub Actions mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def cli_command() -> list[str]:
    """``longformer-convert`` from this interpreter's environment (its console script when installed)."""
    script = Path(sys.executable).parent / "longformer-convert"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "longformer_action"]


class RssSampler:
    """Polls a process's RSS and timestamps its log lines (``--profile``): peak RSS per stage."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.samples.append((time.perf_counter(), rss))
            self.stop.wait(self.interval)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


def run_measured(cmd: list[str], log_path: Path, *, profile: bool = False) -> dict[str, Any]:
    """Run ``cmd`` as a fresh process; its wall time, peak RSS, exit code and (with the CLI) stage timings."""
    lines: list[tuple[float, str]] = []
    with log_path.open("w", encoding="utf-8") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.PIPE if profile else subprocess.STDOUT, env=child_env(), text=True
        )
        sampler = reader = None
        if profile:
            sampler = RssSampler(proc.pid)

            def read() -> None:
                assert proc.stderr is not None
                for line in proc.stderr:
                    lines.append((time.perf_counter(), line.rstrip("\n")))
                    log.write(line)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if reader is not None:
            reader.join()
        if sampler is not None:
            sampler.finish()
    result: dict[str, Any] = {
        "wall_s": wall,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "major_faults": usage.ru_majflt,
        "exit_code": proc.returncode,
    }
    text = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    stages = {}
    for line in text:
        match = STAGE_LINE.match(line)
        if match and match.group(1) != "done":  # "done: <output> (total s)" is not a stage
            stages[match.group(1)] = float(match.group(3))
    if stages:
        result["stages_s"] = stages
    if sampler is not None:
        result["profile"] = stage_profile(start, sampler.samples, lines)
    return result


def stage_profile(start: float, samples: list[tuple[float, int]], lines: list[tuple[float, str]]) -> list[dict]:
    """Peak sampled RSS between consecutive stage lines (a stage's line is logged when it ends)."""
    marks = [(t, STAGE_LINE.match(text)) for t, text in lines]
    renamed = {"done": "card+report+publish"}
    bounds = [(t, renamed.get(m.group(1), m.group(1))) for t, m in marks if m] + [(float("inf"), "after-done+exit")]
    rows, begin = [], start
    for end, name in bounds:
        inside = [rss for t, rss in samples if begin <= t < end]
        rows.append(
            {
                "stage": "startup+" + name if begin == start else name,
                "until_s": round(min(end, samples[-1][0] if samples else end) - start, 2),
                "peak_rss_bytes": max(inside, default=0),
                "rss_at_end_bytes": inside[-1] if inside else 0,
            }
        )
        begin = end
    return rows


def warm_page_cache(path: Path) -> float:
    """Read the file once (so every variant starts with it in the page cache); returns seconds."""
    start = time.perf_counter()
    buffer = bytearray(16 * 2**20)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while f.readinto(view):
            pass
    return time.perf_counter() - start


# --- the run ----------------------------------------------------------------------------------------


def ensure_checkpoint(size: str, work: Path, *, rebuild: bool) -> Path:
    """``work/size`` with ``checkpoint.ckpt`` and ``base/config.json``; made in a child process unless cached."""
    folder = work / size
    meta_path = folder / "checkpoint.json"
    wanted = {"config": CONFIGS[size], "train_length": train_length(CONFIGS[size])}
    if not rebuild and (folder / "checkpoint.ckpt").is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in wanted.items()) and (folder / "base" / "config.json").is_file():
            print(f"[{size}] reusing {folder / 'checkpoint.ckpt'}", file=sys.stderr)
            return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"[{size}] making the checkpoint (one Trainer step with AdamW) ...", file=sys.stderr)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "_make", size, str(folder)], check=True, env=child_env()
    )
    print(f"[{size}] checkpoint made in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return folder


def variant_command(variant: str, folder: Path, out: Path) -> list[str]:
    ckpt, base = folder / "checkpoint.ckpt", folder / "base"
    if variant == "origin":
        return [sys.executable, str(Path(__file__).resolve()), "_origin", str(base), str(ckpt), str(out)]
    cmd = [*cli_command(), "convert", "--checkpoint", str(ckpt), "--output", str(out), "--base-model", str(base)]
    return [*cmd, "--no-check"] if variant == "ours --no-check" else cmd


def clear(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # no write-back of the previous run's output during the next one


def measure_help(repeat: int, logs: Path) -> list[float]:
    times = []
    for i in range(repeat):
        result = run_measured([*cli_command(), "--help"], logs / f"help-{i}.log")
        if result["exit_code"] != 0:
            raise SystemExit(f"longformer-convert --help failed; see {logs / f'help-{i}.log'}")
        times.append(result["wall_s"])
    return times


def source_state() -> dict[str, Any]:
    """The commit measured, and package files that differ from it (an editable install runs the working tree)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return ""
        return done.stdout.strip()

    modified = [line[3:] for line in git("status", "--porcelain", "--", "longformer_action").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "modified": modified}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    versions = {}
    for package in ("torch", "transformers", "pytorch_lightning", "safetensors", "longformer-convert-action"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "source": source_state(),
        "cores": os.cpu_count(),
        "ram_bytes": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": os.getloadavg(),
        "versions": versions,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    rss = [r["peak_rss_bytes"] for r in runs]
    summary: dict[str, Any] = {
        "n": len(runs),
        "wall_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "peak_rss_bytes": statistics.median(rss),
    }
    stage_names = {name for r in runs for name in r.get("stages_s", {})}
    if stage_names:
        summary["stages_s"] = {
            name: statistics.median(r["stages_s"].get(name, 0.0) for r in runs) for name in sorted(stage_names)
        }
    return summary


def targets(results: dict[str, Any], help_s: float) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    for size, variants in results.items():
        origin, fast, full = variants["origin"], variants["ours --no-check"], variants["ours"]
        rss_ratio = fast["peak_rss_bytes"] / origin["peak_rss_bytes"]
        wall_ratio = fast["wall_s"] / origin["wall_s"]
        check_ratio = full["wall_s"] / fast["wall_s"]
        checks += [
            (f"{size}: ours --no-check peak RSS {rss_ratio:.2f}x origin (target <= 0.30x)", rss_ratio <= 0.30),
            (f"{size}: ours --no-check wall {wall_ratio:.2f}x origin (target <= 0.6x)", wall_ratio <= 0.6),
            (f"{size}: ours (with check) wall {check_ratio:.2f}x --no-check (target <= 2x)", check_ratio <= 2),
        ]
        if size == "large":
            gib = full["peak_rss_bytes"] / GIB
            checks.append((f"{size}: ours (with check) peak RSS {gib:.2f} GiB (target <= 4 GiB)", gib <= 4))
    checks.append((f"longformer-convert --help {help_s:.2f} s (target < 0.3 s)", help_s < 0.3))
    return checks


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = m["versions"]
    lines = [
        f"Machine: {m['cores']} cores, {m['ram_bytes'] / GIB:.1f} GiB RAM, {m['cpu']}; Python {m['python']}, "
        f"torch {v['torch']}, transformers {v['transformers']}, pytorch_lightning {v['pytorch_lightning']}; "
        f"load average {m['load_avg_start'][0]:.2f} at start, {m['load_avg_end'][0]:.2f} at end.",
        f"Source: commit {(m['source']['commit'] or 'unknown')[:12]}"
        + (f", with uncommitted changes to {', '.join(m['source']['modified'])}." if m["source"]["modified"] else "."),
        f"Medians of {report['repeat']} runs per variant, alternating; page cache warmed before measuring.",
        "",
    ]
    for size, info in report["checkpoints"].items():
        lines.append(
            f"- {size}: checkpoint {info['file_bytes'] / 1e9:.2f} GB, weights {info['weight_bytes'] / 1e9:.2f} GB "
            f"(warm-up read {info['warm_s']:.1f} s)"
        )
    lines += [
        "",
        "| size | variant | median wall s | wall min-max s | median peak RSS GiB | wall vs origin | RSS vs origin |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for size, variants in report["results"].items():
        origin = variants["origin"]
        for name in VARIANTS:
            s = variants[name]
            lines.append(
                f"| {size} | {name} | {s['wall_s']:.2f} | {s['wall_min_s']:.2f}-{s['wall_max_s']:.2f} | "
                f"{s['peak_rss_bytes'] / GIB:.2f} | {s['wall_s'] / origin['wall_s']:.2f}x | "
                f"{s['peak_rss_bytes'] / origin['peak_rss_bytes']:.2f}x |"
            )
    lines += ["", f"`longformer-convert --help`: median {report['help_s']:.3f} s of {len(report['help_runs_s'])}.", ""]
    stage_rows = [
        (size, name, s["stages_s"])
        for size, variants in report["results"].items()
        for name, s in variants.items()
        if "stages_s" in s
    ]
    if stage_rows:
        lines += ["Median stage times (s) from the CLI's stage log:", ""]
        names = ["read", "base-model", "map", "save", "check"]
        lines += ["| size | variant | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
        for size, name, stages in stage_rows:
            cells = " | ".join(f"{stages[n]:.2f}" if n in stages else "-" for n in names)
            lines.append(f"| {size} | {name} | {cells} |")
        lines.append("")
    if report.get("profiles"):
        lines += ["Peak sampled RSS per stage (GiB; `--profile`, last repetition):", ""]
        for key, rows in report["profiles"].items():
            cells = ", ".join(f"{r['stage']} {r['peak_rss_bytes'] / GIB:.2f} (t={r['until_s']:.1f}s)" for r in rows)
            lines.append(f"- {key}: {cells}")
        lines.append("")
    lines += ["Targets (informational):", ""]
    lines += [f"- {'PASS' if ok else 'MISS'} {text}" for text, ok in report["targets"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_make"]:
        make_checkpoint(argv[1], Path(argv[2]))
        return 0
    if argv[:1] == ["_origin"]:
        origin_convert(*argv[1:4])
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="base,large", help="comma-separated: base, large (default: base,large)")
    parser.add_argument("--quick", action="store_true", help="a small config only: a smoke run of this script")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant and size (default: 3)")
    parser.add_argument("--help-repeat", type=int, default=5, help="runs of `longformer-convert --help` (default: 5)")
    parser.add_argument(
        "--work-dir", type=Path, default=ROOT / "bench-out", help="checkpoint cache and scratch (default: bench-out/)"
    )
    parser.add_argument("--json-out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--rebuild", action="store_true", help="make the checkpoints again even when cached")
    parser.add_argument("--profile", action="store_true", help="also sample RSS (psutil) per stage of each run")
    args = parser.parse_args(argv)

    sizes = ["quick"] if args.quick else [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in CONFIGS or s == "quick"] if not args.quick else []
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from base, large")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    work = args.work_dir.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "sizes": sizes}
    folders = {size: ensure_checkpoint(size, work, rebuild=args.rebuild) for size in sizes}

    help_runs = measure_help(args.help_repeat, logs)
    report["help_runs_s"], report["help_s"] = help_runs, statistics.median(help_runs)

    report["checkpoints"], report["runs"], report["results"], report["profiles"] = {}, {}, {}, {}
    for size in sizes:
        folder = folders[size]
        ckpt = folder / "checkpoint.ckpt"
        meta = json.loads((folder / "checkpoint.json").read_text())
        warm = warm_page_cache(ckpt)
        report["checkpoints"][size] = {
            "file_bytes": ckpt.stat().st_size,
            "weight_bytes": meta["weight_bytes"],
            "config": meta["config"],
            "warm_s": warm,
        }
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        out = work / "out" / size
        for rep in range(args.repeat):
            for variant in VARIANTS:
                clear(out)
                slug = variant.replace(" --", "-").replace(" ", "-")
                log = logs / f"{size}-{slug}-{rep}.log"
                result = run_measured(variant_command(variant, folder, out), log, profile=args.profile)
                if result["exit_code"] != 0 or not (out / "config.json").is_file():
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                    raise SystemExit(f"[{size}] {variant} failed (exit {result['exit_code']}); {log}:\n{tail}")
                print(
                    f"[{size}] rep {rep + 1}/{args.repeat} {variant:16s} {result['wall_s']:7.2f} s "
                    f"{result['peak_rss_bytes'] / GIB:6.2f} GiB",
                    file=sys.stderr,
                )
                runs[variant].append(result)
                if "profile" in result:
                    report["profiles"][f"{size} {variant}"] = result.pop("profile")
        clear(out)
        report["runs"][size] = runs
        report["results"][size] = {v: summarize(r) for v, r in runs.items()}

    report["machine"]["load_avg_end"] = os.getloadavg()
    report["targets"] = targets(report["results"], report["help_s"])
    text = markdown(report)
    print(text)
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        report["targets"] = [{"target": t, "passed": ok} for t, ok in report["targets"]]
        report["markdown"] = text
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
