"""Training: the LightningModule, the data module, optimiser groups and schedule, MLflow integration."""
