"""Convert PyTorch Lightning checkpoints of Longformer question-answering models into checked
Hugging Face transformers folders."""
