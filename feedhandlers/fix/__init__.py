"""FIX drop-copy feedhandler: a QuickFIX acceptor booking ExecutionReports as `fill` rows, exactly once."""
