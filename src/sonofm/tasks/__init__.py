"""One package per training command: its entry point, its LightningModule and its evaluation."""
