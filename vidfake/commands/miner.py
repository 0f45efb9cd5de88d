"""``vidfake miner``: serve the detector to BitMind subnet validators (see vidfake.miner.server)."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from vidfake.miner.server import main as serve

    return int(serve(argv) or 0)
