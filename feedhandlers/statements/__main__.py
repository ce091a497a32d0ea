"""`python -m feedhandlers.statements`: watches a folder for CCP statement files and publishes each
file's rows as one `ccpmargin` batch into the tickerplant (format: common.ccpfile.read_statement,
docs/reconcile.md "Statement files").

Owns the statement folder's life cycle: every `--poll` seconds it reads the `*.csv` files there (at most
MAX_FILES a pass, oldest name first). A valid file is published (synchronously: durable in the journal)
and moved to `done/`. A file with any bad row is published not at all and moved to `rejected/`, with
the reason (file:line: field: message) in `rejected/<name>.error` and in the log: a partial statement
would be misleading. Before its first pass it replays today's `ccpmargin` from the journal: a file
whose rows are already there (killed between the publish and the move) is moved to `done/` without
being published again. A file name is therefore published once per trading day.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from pathlib import Path

from common.ccpfile import CcpFileError, read_statement
from common.defaults import STATEMENTS_CONTROL, TP_CONTROL, TP_INGEST, VAR_DIR
from common.rpc import RpcServer
from tickerplant.client import Publisher, Subscriber

log = logging.getLogger("feedhandlers.statements")
MAX_FILES = 100               # files handled in one pass
REPLAY_TIMEOUT_S = 60.0


class StatementFeed:
    """The folder, the publisher and what was done (counts for `status`)."""

    def __init__(self, folder: Path, publisher: Publisher, published: set[str]):
        self.folder = folder
        self.done_dir, self.rejected_dir = folder / "done", folder / "rejected"
        self.done_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        self.pub = publisher
        self.published = published          # file names whose rows are in today's journal
        self.counts = {"files": 0, "rows": 0, "rejected": 0, "already": 0}
        self.stopping = False

    def status(self, _req=None) -> dict:
        return {"folder": str(self.folder), **self.counts, "pending": len(self._pending())}

    def _pending(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.csv") if p.is_file())[:MAX_FILES]

    def scan(self) -> int:
        """One pass over the folder; returns the files handled."""
        files = self._pending()
        for path in files:
            if self.stopping:
                break
            self.handle(path)
        return len(files)

    def handle(self, path: Path) -> None:
        if path.name in self.published:
            log.warning("%s: already published today (journal); moved to done/ without publishing again", path.name)
            self.counts["already"] += 1
            os.replace(path, self.done_dir / path.name)
            return
        try:
            batch = read_statement(path)
        except CcpFileError as e:
            log.error("rejected %s: %s (nothing published from it)", path.name, e)
            (self.rejected_dir / f"{path.name}.error").write_text(f"{e}\n")
            os.replace(path, self.rejected_dir / path.name)
            self.counts["rejected"] += 1
            return
        seq = self.pub.publish_sync("ccpmargin", batch)
        os.replace(path, self.done_dir / path.name)
        self.published.add(path.name)
        self.counts["files"] += 1
        self.counts["rows"] += len(batch["sym"])
        log.info("published %s: %d rows (seq %d)", path.name, len(batch["sym"]), seq)


def published_files(control: str, name: str) -> set[str]:
    """The statement file names of today's `ccpmargin` rows in the journal (source is file:line)."""
    files: set[str] = set()

    def on_batch(table, cols, seq):
        files.update(str(s).rsplit(":", 1)[0] for s in cols["source"])

    sub = Subscriber(f"{name}.replay", control, tables=["ccpmargin"], on_batch=on_batch, timeout=REPLAY_TIMEOUT_S)
    try:
        sub.start()
    finally:
        sub.close()
    return files


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m feedhandlers.statements", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=str(VAR_DIR / "statements"), help="statement folder (default %(default)s)")
    p.add_argument("--ingest", default=TP_INGEST, help="tickerplant ingest endpoint (default %(default)s)")
    p.add_argument("--control", default=TP_CONTROL, help="tickerplant control endpoint (default %(default)s)")
    p.add_argument("--status", default=STATEMENTS_CONTROL, help="this process's status RPC endpoint (default %(default)s)")
    p.add_argument("--name", default="statements", help="publisher name (default %(default)s)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between passes over the folder (default %(default)s)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    feed = StatementFeed(folder, Publisher(args.name, endpoint=args.ingest, timeout=10.0),
                         published_files(args.control, args.name))
    signal.signal(signal.SIGTERM, lambda *_: setattr(feed, "stopping", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(feed, "stopping", True))
    server = RpcServer(args.status, {"status": feed.status})
    log.info("watching %s every %g s (%d files already published today)", folder, args.poll, len(feed.published))
    try:
        while not feed.stopping:
            feed.scan()
            deadline = time.monotonic() + args.poll
            while not feed.stopping and (left := deadline - time.monotonic()) > 0:
                if server.socket.poll(int(min(left, 0.1) * 1000) + 1):
                    server.drain()
    finally:
        server.close()
        feed.pub.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
