"""The query gateway: a kdb+ IPC server for q and PyKX clients and an HTTP JSON API, in front of the
rdb and calc (ZeroMQ request/reply) and the tickerplant (subscriptions). See docs/gateway.md.

The gateway uses PyKX only to (de)serialize kdb+ IPC, which works without a kdb+ licence; it asks
PyKX for its unlicensed mode up front (no licence lookup, no prompt) unless told otherwise."""
import os

os.environ.setdefault("PYKX_UNLICENSED", "true")
