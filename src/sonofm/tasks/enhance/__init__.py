"""``sonofm finetune enhance``: image enhancement fine-tuning and restoring image files."""
