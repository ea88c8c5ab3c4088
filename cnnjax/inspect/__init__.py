"""Looking inside and reusing trained networks.

* ``filters``: ``plot_filters``, ``plot_filter_kernels``, ``normalize_filters``,
  ``make_grid``; classic hand-crafted kernels (Gaussian blur, Sobel, a
  cross detector: ``hand_crafted_filters``, ``apply_filter``, ``plot_hand_crafted``) on a
  real photograph (``sample_image``).
* ``features``: ``activations`` of named layers (Flax
  ``capture_intermediates`` filtered by module path, or sown values),
  ``layer_names``, ``plot_activations``, ``extract_features`` (embeddings for
  k-NN).
* ``transfer``: ``load_backbone``, ``transfer_optimizer`` (frozen or
  fine-tuned backbone with ``optax.partition``), ``accuracy``;
  ``cnnjax.train.fit`` and ``cnnjax.train.frozen_apply`` (frozen BatchNorm
  statistics) train with them.
* ``summary``: ``summary(model, input_shape)`` (a table of layers, output
  shapes, parameters and MACs), ``count_params``, ``count_macs``.
* ``runs``: ``split_arrays`` (a split as arrays, normalised as in training);
  a trained run's model and variables come from ``cnnjax.train.load_run``.

Pictures are PNG files written with matplotlib's Agg canvas.
"""

from cnnjax.inspect.features import (
    activation_grid,
    activations,
    extract_features,
    layer_names,
    plot_activations,
)
from cnnjax.inspect.filters import (
    apply_filter,
    cross_image,
    filter_grid,
    hand_crafted_filters,
    make_grid,
    normalize_filters,
    plot_filter_kernels,
    plot_filters,
    plot_hand_crafted,
    sample_image,
)
from cnnjax.inspect.runs import split_arrays
from cnnjax.inspect.summary import LayerInfo, count_macs, count_params, summary, trace_layers
from cnnjax.inspect.transfer import (
    accuracy,
    backbone_labels,
    load_backbone,
    transfer_optimizer,
)

__all__ = [
    "LayerInfo",
    "accuracy",
    "count_macs",
    "count_params",
    "activation_grid",
    "activations",
    "apply_filter",
    "backbone_labels",
    "cross_image",
    "extract_features",
    "filter_grid",
    "hand_crafted_filters",
    "layer_names",
    "load_backbone",
    "make_grid",
    "normalize_filters",
    "plot_activations",
    "plot_filter_kernels",
    "plot_filters",
    "plot_hand_crafted",
    "sample_image",
    "split_arrays",
    "summary",
    "trace_layers",
    "transfer_optimizer",
]
