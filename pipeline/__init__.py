"""Stage functions over files: params in, files out. The CLI, DVC and Prefect all call these."""
