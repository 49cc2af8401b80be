"""The publish stage: the report, the model card and the step summary."""
