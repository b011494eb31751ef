"""The Hydra plugin class; Optuna is imported only when a search starts (Hydra imports every plugin module)."""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ModRWKVOptunaSweeper(Sweeper):
    """Hydra's entry point; see ``modrwkv.training.search_sweeper.SearchSweeper`` for what it does."""

    def __init__(self, **kwargs: Any) -> None:
        from modrwkv.training.search_sweeper import SearchSweeper

        self.sweeper = SearchSweeper(**kwargs)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
