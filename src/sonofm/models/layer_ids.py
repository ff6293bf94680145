"""Layer ids for layer-wise LR decay of a model built from a backbone and modules on top of it."""

from __future__ import annotations


class LayersAboveBackbone:
    """``layer_id``/``num_layer_ids`` for an ``nn.Module`` holding its backbone at ``backbone_attribute``.

    Backbone parameters keep the backbone's own ids; everything else (heads, necks, decoders) sits one layer above
    the backbone's last.
    """

    backbone_attribute = "backbone"

    def layer_id(self, param_name: str) -> int:
        backbone = getattr(self, self.backbone_attribute)
        prefix = f"{self.backbone_attribute}."
        if param_name.startswith(prefix):
            return backbone.layer_id(param_name.removeprefix(prefix))
        return backbone.num_layer_ids

    @property
    def num_layer_ids(self) -> int:
        return getattr(self, self.backbone_attribute).num_layer_ids + 1
