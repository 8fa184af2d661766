"""File-level runs behind the commands: analyze/assign/score, batch (local and Ray), behaviour
jobs, sentiment training, warm-up."""
