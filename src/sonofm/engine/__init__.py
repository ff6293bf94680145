"""The shared training engine: run configs, splits and loaders, the Trainer, the LightningModule base, optimiser, precision."""
