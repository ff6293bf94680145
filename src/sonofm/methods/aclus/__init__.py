"""ACLUS: anatomy-level cross-view contrastive pretraining with context prediction on a corrupted core region.

One readable piece per file: ``views`` (paired crops with anatomy maps and their true overlap), ``corruption``
(vectorised Models-Genesis-style damage in pixel space), ``pooling`` (anatomy id sampling and mask pooling),
``loss`` (DetCon-B InfoNCE with negatives gathered across ranks), ``model`` (online/target networks, predictor, EMA).
"""
