"""The map stage: which checkpoint keys are the model, which task its head computes, and the target config."""
