"""PyTorch reference of the classifier train step.

Mirrors jaxgen/models/classifier.py (Classifier) and
ClassifierTask.train_step of jaxgen/tasks/classifier.py: a train-mode
forward (batch statistics, dropout) of `batch[config.model.input]`, mean
softmax cross-entropy against `batch["label"]`, backward and one Adam step
with config.optim's schedule (cosine by default).

The train step sees images at data.crop_size; the loop's example batch holds
un-augmented elements at the larger load size, so a larger batch is
center-cropped to crop_size once, when it is stored.
"""

import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref.common import Adam, device, to_nchw
from jaxgen.models import unet


def _batch_norm(features):
  # flax BatchNorm(momentum=0.9) keeps 0.9 of the old average; eps 1e-5.
  return nn.BatchNorm2d(features, eps=1e-5, momentum=0.1)


class Classifier(nn.Module):
  """[Conv 3x3, BN, LeakyReLU, DownConv, BN, LeakyReLU]* -> pool -> dense."""

  def __init__(self, res, channels, num_classes, width, max_width, dropout):
    super().__init__()
    layers = []
    cin = channels
    for i in range(max(1, unet.unet_depth(res) - 2)):
      w = unet.level_width(width, max_width, i)
      layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), _batch_norm(w),
                 nn.LeakyReLU(0.2),
                 nn.Conv2d(w, w, 4, 2, 1, bias=False), _batch_norm(w),
                 nn.LeakyReLU(0.2)]
      cin = w
    self.convs = nn.Sequential(*layers)
    self.dropout = nn.Dropout(dropout)
    self.dense = nn.Linear(cin, num_classes)

  def forward(self, x):
    x = self.convs(x).mean(dim=(2, 3))
    return self.dense(self.dropout(x))


class ClassifierReference:
  """The classifier train step on a stored batch."""

  def __init__(self, config, batch):
    m, data = config.model, config.data
    if not data.get("num_classes", 0):
      raise ValueError("The classifier needs config.data.num_classes > 0 "
                       "and labelled data.")
    self.device = device()
    x = to_nchw(batch[m.input], self.device)
    res = data.get("crop_size", 0) or x.shape[2]
    top, left = (x.shape[2] - res) // 2, (x.shape[3] - res) // 2
    if top < 0 or left < 0:
      raise ValueError(f"Batch images {tuple(x.shape[2:])} are smaller than "
                       f"data.crop_size {res}.")
    self.x = x[:, :, top:top + res, left:left + res].contiguous()
    self.y = torch.from_numpy(batch["label"]).long().to(self.device)
    self.model = Classifier(res, x.shape[1], data.num_classes, m.width,
                            m.max_width, m.dropout).to(self.device)
    self.opt = Adam(self.model.parameters(), config.optim,
                    config.train.num_steps)

  def parameters(self):
    return list(self.model.parameters())

  def step(self) -> float:
    loss = F.cross_entropy(self.model(self.x), self.y)
    self.opt.zero_grad()
    loss.backward()
    self.opt.step()
    return loss.item()


def make(config, batch) -> ClassifierReference:
  """The reference classifier train step for `config` on `batch`."""
  return ClassifierReference(config, batch)
