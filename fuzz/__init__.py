"""A bounded fuzz campaign against a running margintick stack, as a hostile client on 127.0.0.1 would
run it: kdb+ IPC messages to the gateway (`fuzz.ipc_edge`), HTTP requests to its JSON API
(`fuzz.http_edge`), FIX messages and raw bytes over a FIX session to the drop-copy acceptor
(`fuzz.fix_edge`) and connection storms on all three ports (`fuzz.storm`). `fuzz.campaign` runs the
cases, classifies each one (ok reply, error reply, connection closed, hang, crash), samples the memory
of every process of the stack and writes the report; `python -m fuzz` is the command line
(docs/fuzzing.md)."""
