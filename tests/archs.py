"""The named matrix of architectures every stage is tested on: depths 1, 2 and 3, norm on and off, every activation."""

from __future__ import annotations

from core.networks import QNetworkArch

ARCH_MATRIX: dict[str, QNetworkArch] = {
    "reference-8-64-64-4": QNetworkArch(),
    "depth1-none-tanh": QNetworkArch(8, (32,), 4, "none", "tanh", 0.0),
    "depth1-layernorm-elu": QNetworkArch(6, (24,), 3, "layernorm", "elu", 0.0),
    "depth2-none-silu": QNetworkArch(8, (32, 24), 4, "none", "silu", 0.0),
    "depth3-layernorm-gelu": QNetworkArch(8, (32, 24, 16), 4, "layernorm", "gelu", 0.1),
    "depth3-none-leaky_relu": QNetworkArch(8, (24, 24, 16), 4, "none", "leaky_relu", 0.1),
}
ARCH_IDS = list(ARCH_MATRIX)
