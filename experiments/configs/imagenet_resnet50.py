"""ResNet-50 on ImageNet (TFDS ``imagenet2012``, which you prepare yourself).

ImageNet cannot be downloaded automatically: place the archives in TFDS's
manual directory and prepare it once::

  python -m cnnjax.data.prepare imagenet2012 --data_dir /path/to/tensorflow_datasets

Command (8 accelerators; the global batch is split across all devices)::

  python experiments/train.py --config experiments/configs/imagenet_resnet50.py \
      --config.data.data_dir=/path/to/tensorflow_datasets --workdir runs/imagenet_resnet50

Expected (the published figure of this recipe, the Flax ImageNet example's;
not measured with cnnjax): top-1 accuracy about 0.76 after 90 epochs (SGD
with momentum, learning rate 0.1 x batch/256 with 5 warm-up epochs and cosine
decay, label smoothing 0.1, bfloat16 compute). Streams
through Grain with worker processes.

Smoke variant (a few steps on 256 examples)::

  python experiments/train.py --config experiments/configs/imagenet_resnet50.py:smoke --workdir /tmp/imagenet_smoke
"""

from cnnjax.train import recipes
from cnnjax.train.config import base_config


def get_config(variant: str | None = None):
  c = base_config()
  c.model.name, c.model.dtype = "resnet50", "bfloat16"
  c.data.name, c.data.pipeline, c.data.worker_count = "imagenet2012", "grain", 8
  # imagenet2012 images vary in size: training takes random-resized crops of the whole
  # decoded image (area 8-100 %, aspect 3/4-4/3) resized to 224, on the host; evaluation
  # the centre 224 of the image resized to a shorter side of 256.
  c.data.image_size, c.data.crop_scale = 224, (0.08, 1.0)
  c.data.eval_split = c.data.test_split = "validation"
  c.augment = "horizontal_flip"
  c.batch_size = c.eval_batch_size = 1024
  c.num_epochs, c.label_smoothing = 90.0, 0.1
  recipes.optimizer(c, "sgd", 0.1 * c.batch_size / 256, momentum=0.9, nesterov=True,
                    weight_decay=1e-4, warmup_epochs=5.0)
  c.log_every_steps, c.checkpoint_every_steps = 100, 2000
  return recipes.finish(c, variant, "imagenet_resnet50", smoke={
      "train_subset": 256, "batch_size": 64, "log_every_steps": 2,
      "overrides": {"model.dtype": "float32", "data.worker_count": 0, "data.image_size": 64,
                    "optimizer.learning_rate": 0.1}})
