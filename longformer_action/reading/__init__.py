"""Reading: what a checkpoint holds besides its tensors."""
