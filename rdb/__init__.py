"""rdb: the real-time database. Holds the day's tables in memory (columnar, time-ordered, per-sym
index), fed by the tickerplant, answers queries over RPC, writes the HDB at end of day."""
