"""Base model folders made from public models' own files, every field kept and only the sizes shrunk.

``tests/fixtures/public-models/<name>/`` holds each model's ``config.json`` (and its
``tokenizer_config.json``, ``special_tokens_map.json``, ``generation_config.json`` where it has
them); its README says where each came from. ``make_public_base`` writes a base folder from them in
one of two forms: the config alone, or with tokenizer files. Public vocabularies are large, so the
tokenizer is a small real one of the same kind (byte-level BPE as RoBERTa's ``vocab.json`` and
``merges.txt``, WordPiece's ``vocab.txt``, a sentencepiece unigram model as XLM-R's
``sentencepiece.bpe.model``), trained on ``demo.CORPUS``, beside the public model's own
``tokenizer_config.json`` and ``special_tokens_map.json``.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longformer_action import demo

FIXTURES = Path(__file__).parent / "fixtures" / "public-models"
#: Text with CJK characters, so that a WordPiece vocabulary learns them as BERT's Chinese models do.
CJK = ("埃菲尔铁塔位于巴黎。", "古斯塔夫·埃菲尔的公司建造了它。")


@dataclass(frozen=True)
class PublicModel:
    """A public model of the fixtures: its folder name, family, and the kind of tokenizer it ships."""

    name: str
    family: str
    tokenizer: str  # "bpe", "wordpiece" or "sentencepiece"

    @property
    def folder(self) -> Path:
        return FIXTURES / self.name


PUBLIC_MODELS = (
    PublicModel("longformer-base-4096", "longformer", "bpe"),
    PublicModel("longformer-large-4096", "longformer", "bpe"),
    PublicModel("longformer-chinese-bert-vocab", "longformer", "wordpiece"),
    PublicModel("xlm-roberta-longformer-base-4096", "longformer", "sentencepiece"),
    PublicModel("led-base-16384", "led", "bpe"),
    PublicModel("led-large-16384", "led", "bpe"),
    PublicModel("led-large-16384-arxiv", "led", "bpe"),
)
BY_NAME = {m.name: m for m in PUBLIC_MODELS}

#: The size fields of each family's config, shrunk to the tiny checkpoints' (everything else is kept).
SIZES = {
    "longformer": (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
    ),
    "led": (
        "vocab_size",
        "d_model",
        "encoder_layers",
        "decoder_layers",
        "num_hidden_layers",
        "encoder_attention_heads",
        "decoder_attention_heads",
        "encoder_ffn_dim",
        "decoder_ffn_dim",
        "max_encoder_position_embeddings",
        "max_decoder_position_embeddings",
    ),
}
#: Generation lengths are sizes too: scaled with the decoder's positions so that they still fit.
GENERATION_LENGTHS = ("max_length", "min_length")


def shrink(public: dict[str, Any], tiny: dict[str, Any], family: str) -> dict[str, Any]:
    """``public`` with its size fields taken from ``tiny`` (a tiny base's config), every other field kept.

    ``attention_window`` keeps its form (a list of one window per layer, or one int) with the tiny
    window; generation lengths (``max_length``, ``min_length``) scale with the decoder's positions.
    """
    shrunk = dict(public)
    for name in SIZES[family]:
        if name in public or name in tiny:
            shrunk[name] = tiny[name] if name in tiny else public[name]
    if family == "led":
        shrunk["num_hidden_layers"] = tiny["encoder_layers"]
    window = tiny["attention_window"]
    window = window[0] if isinstance(window, list) else window
    layers = shrunk["encoder_layers" if family == "led" else "num_hidden_layers"]
    shrunk["attention_window"] = [window] * layers if isinstance(public.get("attention_window"), list) else window
    if family == "led":
        ratio = tiny["max_decoder_position_embeddings"] / public["max_decoder_position_embeddings"]
        for name in GENERATION_LENGTHS:
            if name in public:
                shrunk[name] = max(int(public[name] * ratio), 2)
    return shrunk


def shrink_generation(public: dict[str, Any], ratio: float) -> dict[str, Any]:
    """A ``generation_config.json`` with its lengths scaled like the decoder's positions."""
    shrunk = dict(public)
    for name in GENERATION_LENGTHS:
        if name in public:
            shrunk[name] = max(int(public[name] * ratio), 2)
    return shrunk


def _bpe(folder: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        list(demo.CORPUS) * 4,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    bpe.save_model(str(folder))  # vocab.json and merges.txt, as RoBERTa's


def _wordpiece(folder: Path) -> None:
    from tokenizers import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False, handle_chinese_chars=True)
    wordpiece.train_from_iterator(
        (list(demo.CORPUS) + list(CJK)) * 4,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    wordpiece.save_model(str(folder))  # vocab.txt


def _sentencepiece(folder: Path) -> None:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(demo.CORPUS) * 20),
        model_writer=model,
        vocab_size=80,
        model_type="unigram",  # XLM-R's sentencepiece.bpe.model is a unigram model, whatever its name says
        character_coverage=1.0,
        minloglevel=2,
    )
    (folder / "sentencepiece.bpe.model").write_bytes(model.getvalue())


TOKENIZERS = {"bpe": _bpe, "wordpiece": _wordpiece, "sentencepiece": _sentencepiece}


def make_public_base(model: PublicModel, folder: Path, tiny: dict[str, Any], *, tokenizer: bool) -> Path:
    """Write a base model folder from ``model``'s public files, sizes shrunk to ``tiny``'s.

    Args:
        model: the public model.
        folder: the folder to write.
        tiny: the config of a tiny base of the same family (the checkpoints' sizes).
        tokenizer: also write tokenizer files: a small real tokenizer of the model's kind and the
            model's own ``tokenizer_config.json`` and ``special_tokens_map.json``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    public = json.loads((model.folder / "config.json").read_text())
    config = shrink(public, tiny, model.family)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = model.folder / "generation_config.json"
    if generation.is_file():
        ratio = tiny["max_decoder_position_embeddings"] / public["max_decoder_position_embeddings"]
        shrunk = shrink_generation(json.loads(generation.read_text()), ratio)
        (folder / "generation_config.json").write_text(json.dumps(shrunk, indent=2) + "\n")
    if tokenizer:
        TOKENIZERS[model.tokenizer](folder)
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (model.folder / name).is_file():
                shutil.copyfile(model.folder / name, folder / name)
    return folder
