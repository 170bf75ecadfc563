"""What every stage shares: params (typed, frozen, validated once), errors, progress, path
checks, the CLI, dvc.yaml's derivation (dvcfile, codedeps), pictures (plots) and the run
summary."""
