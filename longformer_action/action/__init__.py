"""The action's runner-side steps and the workflow-command toolkit: standard library only."""
