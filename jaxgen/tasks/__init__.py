"""Task registry: a config's `task` name -> the class implementing it.

Add a task with one line in `_TASKS` ("module:Class", imported on demand).
"""

import importlib

_TASKS = {
    "vae": "jaxgen.tasks.vae:VAETask",
    "gan": "jaxgen.tasks.gan:GANTask",
    "siamese_gan": "jaxgen.tasks.siamese_gan:SiameseGANTask",
    "cgan": "jaxgen.tasks.cgan:CGANTask",
    "cyclegan": "jaxgen.tasks.cyclegan:CycleGANTask",
    "classifier": "jaxgen.tasks.classifier:ClassifierTask",
}


def known_tasks():
  """Sorted names of every registered task."""
  return sorted(_TASKS)


def task_class(name):
  """The class registered for a task name (imports its module).

  Args:
    name: a task name (config.task).

  Returns:
    The class.

  Raises:
    ValueError: for an unknown task name, listing the known ones.
  """
  if name not in _TASKS:
    raise ValueError(f"Unknown task {name!r} (config.task); known tasks: "
                     f"{', '.join(known_tasks())}.")
  module, cls = _TASKS[name].split(":")
  return getattr(importlib.import_module(module), cls)


def get_task(config):
  """Instantiates the task named by `config.task`.

  Args:
    config: the full experiment config.

  Returns:
    A jaxgen.tasks.base.Task.

  Raises:
    ValueError: for an unknown task name, listing the known ones.
  """
  return task_class(config.get("task", None))(config)
