"""The market price feed: a correlated price simulator calibrated on the real history, CSV tick replay,
and an adapter interface for vendor feeds, publishing `quote` rows into the tickerplant."""
