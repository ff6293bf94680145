"""Interactive prompting: clicks and boxes in an image's own pixels keep their pixel centres in the model frame;
negative clicks and a box with clicks reach SAM's prompt encoder; the mask comes back at the image's size."""

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.sam import AdaptedSam, build_sam
from sonofm.sam.interactive import image_prompt, prompted_mask
from sonofm.sam.prompts import Prompts


def test_pixel_indices_keep_their_centres_through_the_resize():
    prompt = image_prompt([(0, 0, 1), (127, 31, 0)], (0, 0, 127, 31), (128, 32), 64)
    # x: 128 -> 64 px (pixel 0 spans [0, 1), its centre 0.5 lands on 0.25, index -0.25); y: 32 -> 64 px
    torch.testing.assert_close(prompt.points, torch.tensor([[[-0.25, 0.5], [63.25, 62.5]]]))
    torch.testing.assert_close(prompt.boxes, torch.tensor([[-0.25, 0.5, 63.25, 62.5]]))
    assert prompt.point_labels.tolist() == [[1, 0]]
    same = image_prompt([(5, 7, 1)], None, (64, 64), 64)
    assert same.points.tolist() == [[[5.0, 7.0]]] and same.boxes is None


@pytest.mark.parametrize("clicks, box, message", [([], None, "at least one click or a box"),
                                                  ([(1, 1, 2)], None, r"label must be 1 \(positive\) or 0")])
def test_bad_prompts_are_refused(clicks, box, message):
    with pytest.raises(SonofmError, match=message):
        image_prompt(clicks, box, (32, 32), 64)


def test_negative_clicks_and_boxes_change_the_mask_at_the_image_size():
    torch.manual_seed(0)
    model = AdaptedSam(build_sam("vit_tiny", img_size=64), ["background", "lesion"], adapter="frozen").eval()
    with torch.inference_mode():
        embedding = model.embed(torch.randn(1, 3, 64, 64))
        masks = {label: prompted_mask(model, embedding, image_prompt([(30, 10, label)], None, (48, 20), 64), (48, 20))
                 for label in (0, 1)}
        with_box = prompted_mask(model, embedding, image_prompt([(30, 10, 1)], (5, 2, 40, 18), (48, 20), 64), (48, 20))
        positive = Prompts(torch.tensor([0]), torch.tensor([1]), points=image_prompt([(30, 10, 1)], None, (48, 20),
                                                                                      64).points)
        unlabeled = prompted_mask(model, embedding, positive, (48, 20))  # no labels: every click positive
    assert masks[1].shape == (20, 48) and masks[1].dtype == bool
    assert (masks[0] != masks[1]).any() and (with_box != masks[1]).any()
    assert (unlabeled == masks[1]).all()
