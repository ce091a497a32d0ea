"""Default endpoints, ports and paths of the margintick processes (all bound to 127.0.0.1)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO_ROOT / "q" / "schema.q"
VAR_DIR = REPO_ROOT / "var"            # run-time state of the demo stack: journal, hdb, FIX stores, logs

HOST = "127.0.0.1"
TP_INGEST = f"tcp://{HOST}:5100"
TP_PUB = f"tcp://{HOST}:5101"
TP_CONTROL = f"tcp://{HOST}:5102"
RDB_QUERY = f"tcp://{HOST}:5110"
CALC_QUERY = f"tcp://{HOST}:5120"
PRICES_CONTROL = f"tcp://{HOST}:5130"    # the price feed's control socket (events, status)
NOTIFY_CONTROL = f"tcp://{HOST}:5140"    # the notifier's status socket
GATEWAY_IPC_PORT = 5010
GATEWAY_HTTP_PORT = 8080
FIX_PORT = 9878
RECON_QUERY = f"tcp://{HOST}:5170"       # the recon process's query socket (status)
STATEMENTS_CONTROL = f"tcp://{HOST}:5171"    # the statements feedhandler's control socket (status)
