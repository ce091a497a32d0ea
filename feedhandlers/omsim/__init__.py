"""FIX OMS simulator: a QuickFIX initiator sending realistic drop-copy fills, or replaying raw FIX files."""
