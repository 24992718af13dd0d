"""A local emulator of the OpenAI Batch, Anthropic Message Batches and Azure OpenAI batch APIs.

It is one HTTP server on 127.0.0.1 that the official ``openai`` and
``anthropic`` SDKs can talk to as if it were the real service, with a
controllable clock, deterministic answers, failure/expiry/cancel knobs, fault
injection and optional persistence, so that warehouse-batch (and its tests)
can run whole batch jobs offline::

    from warehouse_batch.emulator import EmulatorConfig, start

    with start(EmulatorConfig(port=0, clock="manual")) as emu:
        client = openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-test")
        ...
        emu.advance(10)

See :mod:`.admin_api` for the ``/_emulator/`` endpoints, :mod:`.answers` for
the answer rules and :mod:`.lifecycle` for how batches progress.
"""
from __future__ import annotations

from .config import EmulatorConfig
from .running import AdminError, RunningEmulator, serve, start

__all__ = ["AdminError", "EmulatorConfig", "RunningEmulator", "serve", "start"]
