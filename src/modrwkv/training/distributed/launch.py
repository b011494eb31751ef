"""How a job's processes start: ranks of a job that submitit started (one task per device), and a clear error for
the one combination that cannot work (a Hydra multirun with a strategy that relaunches ``sys.argv``)."""

from __future__ import annotations

import logging
import os
import zlib

import lightning as L
from lightning.fabric.plugins.environments import ClusterEnvironment

log = logging.getLogger("modrwkv.distributed")


class SubmititEnvironment(ClusterEnvironment):
    """Ranks from submitit's ``JobEnvironment``: submitit started one process per device (SLURM or local executor).

    Lightning then starts no processes of its own (``creates_processes_externally``), so this works inside a Hydra
    multirun, where relaunching ``sys.argv`` cannot. On SLURM the ranks are SLURM's; with submitit's local executor
    (``hydra/launcher=local``) they come from its ``SUBMITIT_LOCAL_*`` variables, which Lightning does not know.
    The main port is derived from the job id (every array task its own), or ``MASTER_PORT`` if set.
    """

    def __init__(self):
        import submitit

        self._env = submitit.JobEnvironment()
        self._hosts = list(self._env.hostnames) if self._env.name() == "slurm" else ["127.0.0.1"]

    @staticmethod
    def detect() -> bool:
        """Inside a submitit job with more than one task."""
        if os.environ.get("SUBMITIT_EXECUTOR") not in ("slurm", "local"):
            return False
        import submitit

        return submitit.JobEnvironment().num_tasks > 1

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", self._hosts[0])

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        return 15000 + zlib.crc32(str(self._env.job_id).encode()) % 20000

    @property
    def num_nodes(self) -> int:
        return int(self._env.num_nodes)

    @property
    def tasks_per_node(self) -> int:
        return int(self._env.num_tasks) // self.num_nodes

    def world_size(self) -> int:
        return int(self._env.num_tasks)

    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            raise ValueError(f"the Trainer wants {size} processes but submitit started {self.world_size()} tasks: "
                             f"set trainer.devices x trainer.num_nodes = tasks_per_node x nodes")

    def global_rank(self) -> int:
        return int(self._env.global_rank)

    def set_global_rank(self, rank: int) -> None:
        pass  # the rank is submitit's

    def local_rank(self) -> int:
        return int(self._env.local_rank)

    def node_rank(self) -> int:
        return int(self._env.node)

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        if num_devices * num_nodes != self.world_size():
            raise ValueError(f"trainer.devices={num_devices} x trainer.num_nodes={num_nodes} != {self.world_size()} "
                             f"submitit tasks: one task per device (hydra.launcher.tasks_per_node = devices)")


def cluster_overrides() -> dict:
    """Trainer arguments for a job that submitit started with several tasks: the ``SubmititEnvironment`` plugin and
    ``devices``/``num_nodes`` as submitit laid them out. Empty otherwise (Lightning detects torchrun and plain SLURM
    ``srun`` itself, and launches its own processes in a single run)."""
    if not SubmititEnvironment.detect():
        return {}
    env = SubmititEnvironment()
    log.info("submitit job: rank %d of %d (%d nodes x %d tasks), main %s:%d", env.global_rank(), env.world_size(),
             env.num_nodes, env.tasks_per_node, env.main_address, env.main_port)
    return {"plugins": [env], "devices": env.tasks_per_node, "num_nodes": env.num_nodes}


class LaunchError(RuntimeError):
    """This way of starting processes cannot work; the message says which one does."""


def check_launch(trainer: L.Trainer, multirun: bool) -> None:
    """Refuse a strategy that relaunches ``sys.argv`` (ddp, fsdp) inside a Hydra multirun: every relaunched process
    would start the whole sweep again. Raised before any training."""
    from lightning.fabric.strategies.launchers.subprocess_script import _SubprocessScriptLauncher as FabricLauncher
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    env = getattr(trainer.strategy, "cluster_environment", None)
    relaunches = (isinstance(launcher, (_SubprocessScriptLauncher, FabricLauncher)) and trainer.num_devices > 1
                  and env is not None and not env.creates_processes_externally)
    if multirun and relaunches:
        raise LaunchError(
            f"strategy {type(trainer.strategy).__name__} with {trainer.num_devices} devices relaunches "
            "`python src/train.py ...` once per device, which cannot work inside a Hydra multirun (-m). Use one of: "
            "trainer=ddp_spawn (this machine); hydra/launcher=slurm or hydra/launcher=local with "
            "hydra.launcher.tasks_per_node=<devices> (one submitit task per device); or a single run per process "
            "with torchrun. See docs/SCALING.md.")


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().mode) == "RunMode.MULTIRUN"
    except ValueError:  # not under Hydra
        return False
