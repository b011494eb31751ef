"""Preemption: SIGTERM or SIGUSR1 saves a checkpoint at the next step boundary and stops the run as KILLED.

Lightning turns SIGTERM into ``SIGTERMException`` at a step boundary (all ranks together). This callback also maps
SIGUSR1 to it where Lightning does not already own SIGUSR1 (under SLURM, Lightning's SLURM environment saves and
requeues the job itself), and writes ``last.ckpt`` through the ``ModelCheckpoint`` callback's folder before the
process exits with ``128 + signal`` (non-zero: a scheduler sees the job did not finish).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger("modrwkv.preemption")


class Preempted(SystemExit):
    """The run was stopped by a signal after saving its checkpoint; the exit code is ``128 + signal``."""

    def __init__(self, signum: int, checkpoint: str | None):
        super().__init__(128 + signum)
        self.signum, self.checkpoint = signum, checkpoint

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"stopped by {name}; checkpoint {self.checkpoint or '(none: not saved)'}"


class PreemptionCheckpoint(L.Callback):
    """Saves ``<checkpoint dirpath>/last.ckpt`` when Lightning stops on a signal; remembers which signal."""

    def __init__(self):
        self.signum: int | None = None
        self.saved: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            if signum == signal.SIGUSR1 and isinstance(trainer._accelerator_connector.cluster_environment,
                                                       SLURMEnvironment):
                continue  # Lightning's SLURM plugin saves and requeues on its requeue signal
            previous = signal.getsignal(signum)
            signal.signal(signum, self._handler(trainer, previous))

    def _handler(self, trainer: L.Trainer, previous):
        def handle(signum, frame):
            self.signum = self.signum or signum
            if signum == signal.SIGUSR1:  # as Lightning's SIGTERM notifier: stop at the next step boundary
                trainer._signal_connector._sigterm_notifier_fn(signum, frame)
            if callable(previous):
                previous(signum, frame)
        return handle

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        self.signum = self.signum or signal.SIGTERM
        ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir)
        path = folder / "last.ckpt"
        trainer.save_checkpoint(path)  # the full state (optimiser, loops, data position); every rank takes part
        self.saved = str(path)
        log.warning("%s: checkpoint saved to %s at step %d", signal.Signals(self.signum).name, path,
                    trainer.global_step)
