"""Convert PyTorch Lightning checkpoints of Longformer models (every transformers head) and of LED into
checked Hugging Face transformers folders, one stage per subpackage (see docs/architecture.md)."""
