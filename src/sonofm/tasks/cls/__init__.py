"""``sonofm finetune cls``: classification fine-tuning (full, partial, linear), presets, evaluation."""
