"""Feedhandlers: processes that normalise outside data (FIX fills, market prices, reference data) and
publish it into the tickerplant."""
