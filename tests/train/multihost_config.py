"""The config shared by the two-process run and its one-process reference."""

from cnnjax.train import config as config_lib


def config(strategy="pmap"):
  c = config_lib.base_config()
  c.strategy = strategy
  c.model.name = "digits_cnn"
  c.model.kwargs = {"width": 4}
  c.data.name = "digits"
  c.data.train_subset = 128
  c.batch_size = 32
  c.eval_batch_size = 40
  c.num_train_steps = 6
  c.optimizer.learning_rate = 0.05
  c.schedule.name = "constant"
  c.log_every_steps = 2
  c.checkpoint_every_steps = 3
  c.progress_bar = False
  c.plots = False
  c.compilation_cache_dir = ""
  return config_lib.lock(c)
