"""Layer ids for layer-wise LR decay of a model built from a backbone and modules on top of it."""

from __future__ import annotations


class LayersAboveBackbone:
    """``layer_id``/``num_layer_ids`` for an ``nn.Module`` holding its backbone at ``backbone_attribute``.

    Backbone parameters keep the backbone's own ids; everything else (heads, necks, decoders) takes the backbone's
    ``head_layer_id`` when it has one (a ViT: its top id, shared with the final norm, as BEiT and USFM do), else sits
    one layer above the backbone's last (a ResNet: above ``layer4``).
    """

    backbone_attribute = "backbone"

    def layer_id(self, param_name: str) -> int:
        backbone = getattr(self, self.backbone_attribute)
        prefix = f"{self.backbone_attribute}."
        if param_name.startswith(prefix):
            return backbone.layer_id(param_name.removeprefix(prefix))
        return self._head_layer_id

    @property
    def num_layer_ids(self) -> int:
        return self._head_layer_id + 1

    @property
    def _head_layer_id(self) -> int:
        backbone = getattr(self, self.backbone_attribute)
        return getattr(backbone, "head_layer_id", backbone.num_layer_ids)
