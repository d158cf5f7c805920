"""Per-point embeddings for DCP: PointNet (1x1 convolutions) and DGCNN (edge convolutions on a kNN graph)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def knn_indices(x: Tensor, k: int) -> Tensor:
    """Indices (B, N, k) of the k nearest neighbours of each point (itself included) for features x of (B, C, N)."""
    inner = x.transpose(1, 2) @ x
    sq = x.pow(2).sum(1)
    neg_dist = 2 * inner - sq.unsqueeze(2) - sq.unsqueeze(1)
    return neg_dist.topk(k=min(k, x.shape[2]), dim=-1).indices


def edge_features(x: Tensor, idx: Tensor) -> Tensor:
    """DGCNN edge features [x_j − x_i, x_i] of shape (B, 2C, N, k) for neighbour indices idx (B, N, k)."""
    b, c, n = x.shape
    k = idx.shape[-1]
    flat = (idx + torch.arange(b, device=x.device).view(-1, 1, 1) * n).reshape(-1)
    points = x.transpose(1, 2).reshape(b * n, c)
    neighbours = points[flat].view(b, n, k, c)
    centre = x.transpose(1, 2).unsqueeze(2).expand(-1, -1, k, -1)
    return torch.cat([neighbours - centre, centre], dim=3).permute(0, 3, 1, 2).contiguous()


class PointNetEmbedding(nn.Module):
    """DCP's PointNet: a stack of shared 1x1 convolutions with BatchNorm and ReLU (64-64-64-128-emb in DCP)."""

    def __init__(self, emb_dims: int, channels: tuple[int, ...] = (64, 64, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = (3, *channels, emb_dims)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, points: Tensor) -> Tensor:
        """(B, N, 3) points -> (B, emb_dims, N) embeddings."""
        return self.net(points.transpose(1, 2))


class DGCNNEmbedding(nn.Module):
    """DCP's DGCNN: the kNN graph is built once from xyz; edge convolutions, each max-pooled over the k neighbours,
    are concatenated and mixed by a 1x1 convolution to emb_dims (64-64-128-256 -> 512 in DCP)."""

    def __init__(self, emb_dims: int, k: int = 20, channels: tuple[int, ...] = (64, 64, 128, 256)) -> None:
        super().__init__()
        self.k = k
        widths = (6, *channels)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        self.mix = nn.Sequential(nn.Conv1d(sum(channels), emb_dims, 1, bias=False), nn.BatchNorm1d(emb_dims), nn.ReLU())

    def forward(self, points: Tensor) -> Tensor:
        """(B, N, 3) points -> (B, emb_dims, N) embeddings."""
        xyz = points.transpose(1, 2)
        x = edge_features(xyz, knn_indices(xyz, self.k))
        pooled = []
        for conv in self.convs:
            x = conv(x)
            pooled.append(x.amax(dim=-1))
        return self.mix(torch.cat(pooled, dim=1))
