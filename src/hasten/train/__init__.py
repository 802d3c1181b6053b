"""The training study: training candidates, the process that measures one, and the study."""
