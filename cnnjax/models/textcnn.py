"""A character-level CNN for text: embedding, parallel 1-D convolutions, max over time.

Kim et al., "Character-Aware Neural Language Models" (AAAI 2016): each word
(or text) is a sequence of character ids; filters of several widths slide
over the character embeddings and a max over time keeps each filter's
strongest response, whatever the length of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.models.base import Classifier, field, classifier_head
from cnnjax.models.registry import register

Array = jax.Array
Dtype = Any


@register("textcnn", input_shape=(16,), input_dtype="int32")
class TextCNN(Classifier):
  """Embedding → 1-D convolutions of widths 2, 3, 4 → ReLU → max over time → concat → dense.

  ``(N, T) int -> (N, num_classes)`` with ``T >= max(kernel_sizes)``.

  Submodules: ``embed``, ``conv_w{k}`` (one per width), ``dropout``,
  ``head``; ``pre_logits`` is the concatenated ``len(kernel_sizes) *
  features`` vector.

  Attributes:
    num_classes: output logits.
    vocab_size: number of token (character) ids; inputs must lie in
      ``[0, vocab_size)``.
    embed_dim: embedding size.
    kernel_sizes: widths of the parallel convolutions.
    features: filters per width.
    dropout_rate: dropout before the head (training only).
    dtype, param_dtype: computation and parameter dtypes.
  """

  num_classes: int = field(2)
  vocab_size: int = 256
  embed_dim: int = 32
  kernel_sizes: Sequence[int] = (2, 3, 4)
  features: int = 64
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, tokens: Array, train: bool = True) -> Array:
    """``(N, T)`` integer ids ``-> (N, num_classes)`` logits."""
    if not hasattr(tokens, "shape"):
      raise TypeError(f"TextCNN expects an int array (N, T) of token ids, got {type(tokens).__name__}")
    if tokens.ndim != 2:
      raise ValueError(
          f"TextCNN expects token ids of shape (N, T), rank 2, got shape "
          f"{tuple(tokens.shape)} (rank {tokens.ndim})")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise TypeError(f"TextCNN expects integer token ids (int32), got dtype {tokens.dtype}")
    if tokens.shape[1] < max(self.kernel_sizes):
      raise ValueError(
          f"TextCNN needs sequences of at least {max(self.kernel_sizes)} tokens (its widest "
          f"filter), got length {tokens.shape[1]} (shape {tuple(tokens.shape)})")
    x = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="embed")(tokens)
    pooled = []
    for k in self.kernel_sizes:
      y = layers.Conv(self.features, (k,), padding="VALID", dtype=self.dtype,
                      param_dtype=self.param_dtype, name=f"conv_w{k}")(x)
      pooled.append(jnp.max(nn.relu(y), axis=1))
    x = jnp.concatenate(pooled, axis=-1)
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
    return classifier_head(self, x)
