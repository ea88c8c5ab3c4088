"""Semantic segmentation of the embedded ``digit_scenes``: a U-Net labels every pixel.

64x64 scenes of two to four real handwritten digits (``cnnjax.data.digit_scenes``),
11 pixel classes (background and the ten digits); a three-stage U-Net
(``cnnjax.models.unet``) with circular padding, per-pixel softmax
cross-entropy, Adam with a cosine schedule. Random crops (zero padding,
the border labelled 255 and ignored) move the label maps with the images.

Command::

  python experiments/train.py --config experiments/configs/digit_scenes_unet.py --workdir runs/seg

Variants of the down-sampling (``stride`` by default)::

  python experiments/train.py --config experiments/configs/digit_scenes_unet.py \\
      --config.model.kwargs.downsample=aps --workdir runs/seg_aps

Expected: ``summary.json`` reports ``test_pixel_accuracy`` and
``test_mean_iou`` (over the 11 classes, from the test split's confusion
matrix). Labelling every pixel background scores a pixel accuracy of about
0.9 and a mean IoU of about 0.08, so the mean IoU is the figure to read.
Measured (idle 2-core CPU, 20 epochs, 9.4 minutes): test mean IoU
0.5335, pixel accuracy 95.15%; with ``downsample=aps`` 0.4650 and 94.35%
(``experiments/segmentation_shift.py``, table in docs/guide/equivariance.md).

Smoke variant (one epoch of 256 scenes, a narrow U-Net; for CI)::

  python experiments/train.py --config experiments/configs/digit_scenes_unet.py:smoke --workdir /tmp/smoke_seg
"""

from cnnjax.train import recipes
from cnnjax.train.config import base_config


def get_config(variant: str | None = None):
  c = base_config()
  c.task, c.ignore_label = "segmentation", 255
  c.model.name = "unet"
  c.model.kwargs = {"features": (16, 32, 64), "downsample": "stride", "upsample": "transpose",
                    "padding": "CIRCULAR"}
  c.data.name = "digit_scenes"
  c.data.eval_split = c.data.test_split = "test"
  # Crops pad with zeros and label the padding 255 (ignored). No flips: a
  # mirrored 2 or 7 is no digit of its class.
  c.augment = "random_crop(padding=4)"
  c.batch_size, c.eval_batch_size, c.num_epochs = 32, 50, 20.0
  recipes.optimizer(c, "adam", 2e-3, weight_decay=0.0, warmup_epochs=1.0)
  c.log_every_steps = 20
  return recipes.finish(c, variant, "digit_scenes_unet", smoke={
      "train_subset": 256, "overrides": {"plots": True, "model.kwargs.features": (4, 8)}})
