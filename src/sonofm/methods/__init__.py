"""Pre-training methods; each sub-package holds one method, readable on its own."""
