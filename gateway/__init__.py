"""The query gateway: a kdb+ IPC server for q and PyKX clients and an HTTP JSON API, in front of the
rdb and calc (ZeroMQ request/reply) and the tickerplant (subscriptions). See docs/gateway.md."""
