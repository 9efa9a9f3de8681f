"""Operating a deployed stage: the post-deploy smoke test (`python -m ops.smoke`)."""
