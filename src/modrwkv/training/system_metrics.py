"""MLflow system metrics (CPU, memory, disk, network; GPU utilisation and memory with nvidia-ml-py) for a run.

Lightning's MLFlowLogger creates its run through the client, so MLflow's own switch (``log_system_metrics`` of
``mlflow.start_run``) never sees it; this callback starts MLflow's ``SystemMetricsMonitor`` on the logger's run
for each fit/test and stops it at the stage's end. ``logger.log_system_metrics`` (conf/logger/mlflow.yaml) turns it
on or off; the metrics are ``system/*`` in the run, one sample every ``logger.system_metrics_interval_s``.
"""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger("modrwkv.system_metrics")


class MLflowSystemMetrics(L.Callback):
    """Samples the machine into the MLflow run of the trainer's MLFlowLogger (global rank 0 only; else nothing).

    Args:
        enabled: ``logger.log_system_metrics``.
        interval_s: seconds between samples (``logger.system_metrics_interval_s``).
        tracking_uri: the logger's ``tracking_uri`` (None: MLflow's current one).
    """

    def __init__(self, enabled: bool = True, interval_s: float = 10.0, tracking_uri: str | None = None):
        if interval_s <= 0:
            raise ValueError(f"logger.system_metrics_interval_s={interval_s}: must be > 0 seconds")
        self.enabled = bool(enabled)
        self.interval_s = float(interval_s)
        self.tracking_uri = tracking_uri
        self.monitor = None
        self._stages = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.enabled or not trainer.is_global_zero or self.monitor is not None:
            return
        logger = next((lg for lg in trainer.loggers if type(lg).__name__ == "MLFlowLogger"), None)
        if logger is None:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # resume_logging: a test after the fit goes on from the fit's last step instead of overwriting step 0
        self.monitor = SystemMetricsMonitor(logger.run_id, sampling_interval=self.interval_s,
                                            resume_logging=self._stages > 0, tracking_uri=self.tracking_uri)
        self.monitor.start()
        self._stages += 1

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.monitor is not None:
            self.monitor.finish()  # logs what it sampled since the last batch, then joins its thread
            self.monitor = None
