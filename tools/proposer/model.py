"""The proposer's networks: one shared frame encoder, four self-supervised task heads, GradNorm.

Inputs are stacks of grey 64x64 patches, either an object-centred temporal crop (the same box
cut from frames t-4..t+4) or the whole frame downscaled, as uint8 ``[B, 9, 64, 64]``.

- **Middle-frame prediction with a memory** (MemAE-style): the encoder features of frames
  t-2, t-1, t+1, t+2 address a memory of normal prototypes (softmax attention, hard
  shrinkage), and a decoder predicts frame t from the memory read only. Normal motion and
  appearance are reconstructed well; anything the memory never saw is not.
- **Motion irregularity**: is the 5-frame clip in true order (t-2..t+2), with frames skipped
  (t-4, t-2, ..., t+4: the object moves twice as fast) or shuffled? Trained on normal footage,
  a fast object looks "skipped" even in true order.
- **2x2 spatial jigsaw**: which of the 24 permutations of the middle frame's quadrants was
  applied. Unusual shapes make the true arrangement hard to recognise.
- **Trajectory prediction** (SocialGRU-style): a GRU over an object's last 7 positions plus
  attention over the other objects in the frame predicts its next position.

The three image tasks share the encoder and are balanced with GradNorm (Chen et al., 2018) on
the encoder's last layer; the trajectory task has its own encoder and a fixed weight of 1.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

PERMUTATIONS = list(itertools.permutations(range(4)))  # 24 quadrant arrangements; index 0 is identity
CONTEXT = (2, 3, 5, 6)  # of the 9-frame stack (t-4..t+4): t-2, t-1, t+1, t+2
MIDDLE = 4
NORMAL_CLIP = (2, 3, 4, 5, 6)
SKIPPED_CLIP = (0, 2, 4, 6, 8)


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class FrameEncoder(nn.Module):
    """64x64 grey patch -> [C, 8, 8] features. Shared by every image task."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(1, width // 2, 2), conv_block(width // 2, width, 2),
                                  conv_block(width, width * 2, 1))
        self.last = nn.Conv2d(width * 2, width * 2, 3, 2, 1)
        self.channels = width * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 1, 64, 64]
        return F.relu(self.last(self.body(x)))


class Memory(nn.Module):
    """MemAE memory: each feature vector is rebuilt from a sparse mix of learned prototypes."""

    def __init__(self, slots: int, dim: int, shrink: float = 0.0025) -> None:
        super().__init__()
        self.items = nn.Parameter(torch.randn(slots, dim) / dim**0.5)
        self.shrink = shrink

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # z: [N, D, H, W]
        n, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        weights = F.softmax(flat @ self.items.t(), dim=1)
        if self.shrink > 0:  # hard shrinkage (MemAE eq. 7), continuous relaxation
            weights = F.relu(weights - self.shrink) * weights / (torch.abs(weights - self.shrink) + 1e-12)
            weights = weights / (weights.sum(dim=1, keepdim=True) + 1e-12)
        read = (weights @ self.items).reshape(n, h, w, d).permute(0, 3, 1, 2)
        entropy = (-weights * torch.log(weights + 1e-12)).sum(dim=1).mean()
        return read, entropy


class MiddleFrameHead(nn.Module):
    """Context-frame features -> memory read -> the middle frame at 32x32 (half resolution)."""

    def __init__(self, channels: int, slots: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(nn.Conv2d(channels * len(CONTEXT), channels, 1), nn.ReLU(inplace=True))
        self.memory = Memory(slots, channels)

        def up(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

        self.decoder = nn.Sequential(up(channels, channels // 2), up(channels // 2, channels // 4),
                                     nn.Conv2d(channels // 4, 1, 3, 1, 1))

    def forward(self, context_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        read, entropy = self.memory(self.fuse(context_features))
        return torch.sigmoid(self.decoder(read)), entropy


class ClipClassifier(nn.Module):
    """Per-frame features of a clip (stacked on channels) -> class logits."""

    def __init__(self, channels: int, frames: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels * frames, channels * 2, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels * 2, channels * 2, 3, 2, 1), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels * 2, classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)


class TrajectoryHead(nn.Module):
    """GRU over the last 7 positions + attention over neighbours -> next displacement."""

    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size=4, hidden_size=hidden, batch_first=True)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden + 2, hidden)
        self.value = nn.Linear(hidden + 2, hidden)
        self.out = nn.Sequential(nn.Linear(hidden * 2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def forward(self, tracks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tracks: [F, N, 7, 2] normalised positions of N objects in F frames; mask: [F, N] real objects.

        Returns the predicted next displacement [F, N, 2] (in normalised units x 10).
        """
        f, n, steps, _ = tracks.shape
        deltas = torch.diff(tracks, dim=2, prepend=tracks[:, :, :1])
        inputs = torch.cat([tracks - tracks[:, :, -1:], deltas * 10], dim=-1).reshape(f * n, steps, 4)
        _, hidden = self.gru(inputs)
        h = hidden[-1].reshape(f, n, -1)
        last = tracks[:, :, -1]  # [F, N, 2]
        relative = last[:, None, :, :] - last[:, :, None, :]  # [F, N(query), N(key), 2]
        keys_in = torch.cat([h[:, None].expand(f, n, n, -1), relative * 5], dim=-1)
        scores = (self.query(h)[:, :, None, :] * self.key(keys_in)).sum(-1) / h.shape[-1] ** 0.5
        not_self = ~torch.eye(n, dtype=torch.bool, device=tracks.device)[None]
        valid = mask[:, None, :] & not_self
        scores = scores.masked_fill(~valid, -1e4)
        attention = torch.softmax(scores, dim=-1) * valid.any(-1, keepdim=True)
        context = (attention[..., None] * self.value(keys_in)).sum(2)
        return self.out(torch.cat([h, context], dim=-1))


class ProposerNet(nn.Module):
    """Shared encoder + the four task heads."""

    def __init__(self, width: int = 16, memory_slots: int = 100) -> None:
        super().__init__()
        self.encoder = FrameEncoder(width)
        c = self.encoder.channels
        self.middle = MiddleFrameHead(c, memory_slots)
        self.irregularity = ClipClassifier(c, len(NORMAL_CLIP), 3)  # 0 true order, 1 skipped, 2 shuffled
        self.jigsaw = ClipClassifier(c, 1, len(PERMUTATIONS))
        self.trajectory = TrajectoryHead()

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, K, 64, 64] -> [B, K*C, 8, 8] (each frame encoded alone, features stacked)."""
        b, k, h, w = frames.shape
        features = self.encoder(frames.reshape(b * k, 1, h, w))
        return features.reshape(b, k * features.shape[1], features.shape[2], features.shape[3])


def jigsaw(frames: torch.Tensor, permutation_ids: torch.Tensor) -> torch.Tensor:
    """Rearrange the 2x2 quadrants of each [B, 64, 64] patch by the given permutation ids."""
    b, h, w = frames.shape
    hh, hw = h // 2, w // 2
    tiles = torch.stack([frames[:, :hh, :hw], frames[:, :hh, hw:], frames[:, hh:, :hw], frames[:, hh:, hw:]], 1)
    order = torch.tensor(PERMUTATIONS, device=frames.device)[permutation_ids]  # [B, 4]
    tiles = tiles[torch.arange(b, device=frames.device)[:, None], order]
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=2)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=2)
    return torch.cat([top, bottom], dim=1)


def shuffled_orders(batch: int, generator: torch.Generator) -> torch.Tensor:
    """A random non-identity, non-reversed order of 5 frames per sample: [B, 5] indices 0..4."""
    orders = []
    while len(orders) < batch:
        order = torch.randperm(5, generator=generator)
        if order.tolist() not in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0]):
            orders.append(order)
    return torch.stack(orders)


class GradNorm:
    """GradNorm task weighting: equalise the gradient norms that the tasks put on a shared layer,
    scaled by each task's relative training rate (``alpha`` sets how strongly)."""

    def __init__(self, tasks: int, alpha: float = 1.5, lr: float = 0.025, device: torch.device | None = None) -> None:
        self.weights = torch.ones(tasks, device=device, requires_grad=True)
        self.alpha = alpha
        self.optimizer = torch.optim.Adam([self.weights], lr=lr)
        self.initial: torch.Tensor | None = None

    def current(self) -> torch.Tensor:
        return self.weights.detach()

    def step(self, losses: torch.Tensor, shared: torch.Tensor) -> None:
        """Update the weights from this batch's task losses (graph still alive) on ``shared``."""
        if self.initial is None:
            self.initial = losses.detach().clamp_min(1e-8)
        norms = torch.stack([
            torch.autograd.grad(self.weights[i] * losses[i], shared, retain_graph=True, create_graph=True)[0].norm()
            for i in range(len(losses))
        ])
        ratios = losses.detach() / self.initial
        relative = ratios / ratios.mean()
        target = (norms.mean() * relative**self.alpha).detach()
        loss = (norms - target).abs().sum()
        self.optimizer.zero_grad()
        self.weights.grad = torch.autograd.grad(loss, self.weights)[0]
        self.optimizer.step()
        with torch.no_grad():
            self.weights.clamp_(min=0.05)
            self.weights.mul_(len(losses) / self.weights.sum())
