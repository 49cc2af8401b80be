"""The output folder's file names, beside those transformers writes itself (standard library only)."""

#: The machine-readable report of the conversion, in the folder (and at ``--report``).
REPORT_NAME = "conversion-report.json"

#: The model card, the folder's README (the Hub shows it).
CARD_NAME = "README.md"

#: The checksum file in the output folder, in ``sha256sum`` format (``sha256sum -c SHA256SUMS`` checks it).
CHECKSUMS_NAME = "SHA256SUMS"

#: transformers' generation settings file (LED).
GENERATION_CONFIG_NAME = "generation_config.json"

#: The weights, or with shards their index (transformers' names).
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

#: The tensors of a head no transformers class computes, under their checkpoint names (feature-extraction).
CUSTOM_HEAD_NAME = "custom_head.safetensors"
