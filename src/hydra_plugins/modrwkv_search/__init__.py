"""ModRWKV's Optuna sweeper for Hydra (``hydra/sweeper=modrwkv_optuna``): hydra-optuna-sweeper's search with
pruned trials, resumable studies and MLflow run states; the work is done in ``modrwkv.training.search_sweeper``."""
