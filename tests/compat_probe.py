"""Load converted folders as a downstream job does, in whatever transformers this Python has, and save what
they give: the loaded dtype and loading info, the outputs on given inputs, the tokenizer's ids and decoded
texts, the generation settings and a generated sequence, and whether the model card's snippet runs.

Run as a script by ``tests/test_compat.py`` with the Python of each environment (transformers 4.46 and
the newest 4.x beside 5.x): ``python compat_probe.py SPEC OUT``. SPEC is a JSON list of
``{"key", "folder", "auto_class", "inputs"}``; ``inputs`` is a ``torch.save``d dict of tensors (the
same ids for every version). Only transformers' and torch's public API is used, as old as 4.46.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import transformers

TEXTS = {
    "text": "The Eiffel Tower stands in Paris , on the Champ de Mars . Is it ?",
    "pair": ("Where is the Eiffel Tower?", "It is in Paris, France. Gustave Eiffel's company built it."),
    "unicode": "Gustave Eiffel (1832–1923) naquit à Dijon ; 埃菲尔铁塔位于巴黎 .",
}
MAJOR = int(transformers.__version__.split(".")[0])


def _load(cls: Any, folder: str) -> tuple[Any, dict[str, list[str]]]:
    # transformers 4.x keeps a saved float16 or bfloat16 only when asked, as the model card says; 5.x does
    kwargs = {"torch_dtype": "auto"} if MAJOR < 5 else {}
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kwargs)
    return model.eval(), {k: sorted(map(str, info.get(k, []))) for k in ("missing_keys", "unexpected_keys")}


def _tokens(tokenizer: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"class": type(tokenizer).__name__, "model_max_length": tokenizer.model_max_length}
    for name, text in TEXTS.items():
        args = text if isinstance(text, tuple) else (text,)
        ids = tokenizer(*args)["input_ids"]
        found[name] = {
            "ids": ids,
            "decoded": tokenizer.decode(ids),
            "skipped": tokenizer.decode(ids, skip_special_tokens=True),
        }
    if tokenizer.mask_token:
        found["mask"] = tokenizer(f"Paris is {tokenizer.mask_token}.")["input_ids"]
    return found


def _card_snippet(folder: str) -> str:
    card = (Path(folder) / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", card, re.DOTALL)
    if code is None:
        return "no snippet"
    try:
        exec(compile(code.group(1).replace("path/to/this/folder", folder), "model card", "exec"), {})  # noqa: S102
    except Exception:
        return traceback.format_exc(limit=2)
    return "ok"


def probe(entry: dict[str, Any]) -> dict[str, Any]:
    """What the folder gives in this transformers. ``entry["full"]``: also the tokenizer (fast and, in 4.x,
    slow) and the model card's snippet, which do not depend on the dtype the weights are saved in."""
    folder = entry["folder"]
    cls = getattr(transformers, entry["auto_class"])
    model, loading = _load(cls, folder)
    started = time.perf_counter()
    inputs = torch.load(entry["inputs"], weights_only=True)
    with torch.inference_mode():
        out = model(**inputs)
    outputs = {k: v.float() for k, v in out.items() if isinstance(v, torch.Tensor)}
    result: dict[str, Any] = {
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "loading": loading,
        "outputs": outputs,
    }
    if entry.get("full"):
        result["card"] = _card_snippet(folder)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        result["tokens"] = _tokens(tokenizer)
        if MAJOR < 5:  # the legacy vocabulary files, through transformers 4.x's slow classes
            result["slow_tokens"] = _tokens(transformers.AutoTokenizer.from_pretrained(folder, use_fast=False))
    if model.can_generate():
        settings = model.generation_config.to_dict()
        result["generation"] = {
            k: v for k, v in settings.items() if not k.startswith("_") and k != "transformers_version"
        }
        result["from_model_config"] = bool(getattr(model.generation_config, "_from_model_config", False))
        generate = {k: v for k, v in inputs.items() if not k.startswith("decoder_")}
        with torch.inference_mode():
            result["generated"] = model.generate(**generate)
    result["seconds"] = time.perf_counter() - started
    return result


def main(spec: str, out: str) -> None:
    entries = json.loads(Path(spec).read_text())
    results: dict[str, Any] = {"transformers": transformers.__version__, "folders": {}}
    for entry in entries:
        try:
            results["folders"][entry["key"]] = probe(entry)
        except Exception:
            results["folders"][entry["key"]] = {"error": traceback.format_exc(limit=3)}
    torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
