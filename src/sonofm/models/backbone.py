"""The interface every registered backbone offers to heads, tasks and pretraining methods."""

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Backbone(Protocol):
    """What tasks may rely on, whatever the architecture.

    ``forward_tokens(x)`` maps images ``(B, 3, H, W)`` to tokens ``(B, P + N, C)``: ``P = num_prefix_tokens``
    summary tokens first (a ViT's CLS token, a ResNet's spatial mean), then ``N`` spatial tokens in row-major order,
    ``C = embed_dim``. Calling the module itself returns the same tokens. ``layer_id`` groups parameters for
    layer-wise learning-rate decay, from 0 (input side) to ``num_layer_ids - 1`` (output side). A backbone may set
    ``last_stage_layer_id``, the lowest layer id of its last stage (what partial fine-tuning trains); without it the
    last stage is ``num_layer_ids - 1``. A backbone may set ``head_layer_id``, the id of modules built on top of it
    (a ViT: its top id, as BEiT and USFM); without it they sit at ``num_layer_ids``.

    Optional, set by timm passthrough backbones (``timm/<name>``): ``last_block_prefix`` (the parameter-name prefix
    ``--mode last_block`` trains), ``freeze_unread(forward)`` (stop gradients to what a head's forward path never
    reads; models built on the backbone call it instead of freezing its final norm), ``segmentation_unsupported``
    (why no segmentation head can read it), ``feature_map_layer()`` (the module and map layout Grad-CAM reads) and
    ``fit_state_dict(state)`` (the weight loader's hook to fit a file to the model).
    """

    backbone_name: str
    img_size: int
    embed_dim: int
    num_prefix_tokens: int
    num_layer_ids: int

    def forward_tokens(self, x: Tensor) -> Tensor: ...

    def layer_id(self, param_name: str) -> int: ...
