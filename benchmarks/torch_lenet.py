"""The peer: the same LeNet-5 trained in PyTorch, eager and with torch.compile, float32 or autocast.

Same layers as ``lenet_keras.models.build_lenet5`` (conv 6@5x5, pool, conv 16@5x5, pool, dense
hidden..., dense classes), batch 64, Adam (Keras's epsilon), uint8 NHWC input scaled inside the step,
and the same per-step training metrics Keras keeps (mean loss, top-1 and top-5 hits), read once per
epoch. ``autocast=True`` is PyTorch's own mixed precision, as its AMP recipe runs it: the forward
pass and loss under ``torch.autocast(device, dtype=torch.bfloat16)`` (convolutions and matmuls in
bfloat16, the loss in float32), backward and Adam outside it on float32 parameters. Imported lazily:
torch is a ``bench`` extra, never a runtime dependency.
"""

from __future__ import annotations

import time

import numpy as np


def build(num_classes: int, activation: str, pooling: str, hidden_units, batch_norm: bool):
    from torch import nn

    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    pool = {"average": nn.AvgPool2d, "max": nn.MaxPool2d}[pooling]
    layers = [nn.Conv2d(3, 6, 5), act(), pool(2), nn.Conv2d(6, 16, 5), act(), pool(2), nn.Flatten()]
    width = 16 * 5 * 5
    for i, units in enumerate(hidden_units):
        layers += [nn.Linear(width, units), act()]
        if batch_norm and i == 0:
            layers.append(nn.BatchNorm1d(units))
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class Trainer:
    """One model + Adam; ``epoch(images, labels)`` trains one shuffled pass and returns images/s."""

    def __init__(self, num_classes=100, activation="tanh", pooling="average", hidden_units=(120, 84),
                 batch_norm=False, batch_size=64, learning_rate=1e-3, compile=False, device="cpu",
                 seed=0, autocast=False):
        import torch

        torch.manual_seed(seed)
        self.torch = torch
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = build(num_classes, activation, pooling, hidden_units, batch_norm).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate, eps=1e-7)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.autocast = autocast
        step = self._step
        if compile:
            step = torch.compile(step)
        self.step = step

    def _step(self, images, labels, totals):
        x = images.permute(0, 3, 1, 2).float() / 255.0
        with self.torch.autocast(self.device.type, dtype=self.torch.bfloat16, enabled=self.autocast):
            logits = self.model(x)
            loss = self.loss_fn(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with self.torch.no_grad():
            top5 = logits.topk(5, dim=1).indices
            hits5 = (top5 == labels[:, None]).any(dim=1)
            hits1 = top5[:, 0] == labels
            totals += self.torch.stack([loss.detach() * labels.shape[0], hits1.sum(), hits5.sum()])

    def epoch(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
        torch = self.torch
        images = torch.from_numpy(images).to(self.device)
        labels = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        n = (len(images) // self.batch_size) * self.batch_size  # full batches: one compiled shape
        totals = torch.zeros(3, device=self.device)
        self._sync()
        start = time.perf_counter()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        order = order.to(self.device)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            self.step(images[idx], labels[idx], totals)
        totals.cpu()  # the one host sync per epoch, as Keras's per-epoch logs
        self._sync()
        return n / (time.perf_counter() - start)

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
