"""The publish stage: the report, the model card and the step summary; the push of a checked folder to the Hub."""
