"""Publishing: where a checked folder goes after it is written (the Hugging Face Hub)."""
