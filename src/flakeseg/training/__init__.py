"""Training one model: the LightningModule, losses and optimisers (registries, like the models),
learning-rate schedules, callbacks, random states in checkpoints, fast paths, W&B, the Trainer
factory, and the fitting of classical models."""
