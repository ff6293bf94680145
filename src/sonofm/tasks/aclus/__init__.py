"""``sonofm pretrain aclus``: anatomy-level contrastive pretraining with core context prediction."""
