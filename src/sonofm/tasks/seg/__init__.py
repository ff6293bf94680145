"""``sonofm finetune seg``: segmentation fine-tuning, full-size inference on image files, evaluation."""
