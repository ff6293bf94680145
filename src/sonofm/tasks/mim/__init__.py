"""``sonofm pretrain mim``: USFM spatial-frequency masked image modelling."""
