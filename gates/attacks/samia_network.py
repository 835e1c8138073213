"""SAMIA's attack network (Yuan & Zhang, USENIX Security 2022): a small transformer over class tokens.

BatchNorm1d over the 3C flat features → tokens (batch, C, 3) → Linear(3→64) + GELU (as in the
authors' code) → TransformerEncoder (3 layers, 4 heads, feed-forward 128, GELU, dropout 0.2) →
flatten (64C) → Linear(64C→64) → ReLU → Linear(64→2).

Its own module because it is a torch class: `gates.attacks.samia`, which the CLI reads for the
attack's settings, imports it only when the attack is trained.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SamiaNetwork(nn.Module):
    """The attack network; input (batch, 3C) = [posteriors | sensitivities | one-hot labels]."""

    def __init__(self, num_classes: int, hidden: int = 64, layers: int = 3, heads: int = 4, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.norm = nn.BatchNorm1d(3 * num_classes)
        self.embed = nn.Linear(3, hidden)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden, nhead=heads, dim_feedforward=128, dropout=dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(hidden * num_classes, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        # (batch, 3, C) → (batch, C, 3): token c holds (p_c, s_c, y_c)
        tokens = x.view(x.shape[0], 3, self.num_classes).transpose(1, 2)
        hidden = self.encoder(F.gelu(self.embed(tokens)))
        return self.head(hidden.flatten(1))
