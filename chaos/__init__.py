"""Whole-stack fault injection (`python -m chaos`, `./run.sh chaos`): the real stack driven by a FIX
sender and the price feed while a random process is killed with SIGKILL every few seconds and restarted
by the supervisor, then checked: every fill booked exactly once (journal, rdb, calc's positions), the
rdb equal to the journal, a treasury subscriber holding every margin row once and in order, and a fresh
calc replaying the journal reproducing the last margin rows bit for bit. See docs/operations.md."""
