"""The tickerplant: validates, sequences, journals and publishes every batch (kdb+ tick.q's role).

Modules: server (the process loop), journal (on-disk format, appender, reader, recovery), fanout (the
publish side), tradingday (end-of-day arithmetic), client (Publisher and Subscriber for other
processes). Run it with `python -m tickerplant --help`.
"""
