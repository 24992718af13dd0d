"""``python -m warehouse_batch.emulator``: run the emulator in the foreground.

A stop-gap entry point until the main CLI exposes it; every flag maps to an
:class:`EmulatorConfig` field of the same name.
"""
from __future__ import annotations

import argparse

from .config import CLOCK_MODES, EmulatorConfig
from .running import serve


def main(argv: list[str] | None = None) -> None:
    """Parse flags and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m warehouse_batch.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=CLOCK_MODES, default="real")
    args = parser.parse_args(argv)
    serve(EmulatorConfig(host=args.host, port=args.port, state_dir=args.state_dir, seed=args.seed, clock=args.clock))


if __name__ == "__main__":
    main()
