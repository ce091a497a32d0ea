"""Store: the rdb's tables of the day by name, sharing one SymList; the entry point for applying
batches and for the query layer (the RPC ops of rdb/queries.py and the q-sql evaluator of rdb/qsql)."""
from __future__ import annotations

from rdb.symlist import SymList
from rdb.table import Table, UnknownName


class Store:
    def __init__(self, schemas: dict):
        """`schemas`: {table: common.schema.TableSchema}."""
        self.syms = SymList()
        self.tables: dict[str, Table] = {}
        self.set_schemas(schemas)

    def set_schemas(self, schemas: dict) -> None:
        """Adds tables for schemas not held yet (existing tables and their rows are kept)."""
        for name, schema in schemas.items():
            if name not in self.tables:
                self.tables[name] = Table(schema, self.syms)

    def table(self, name) -> Table:
        try:
            return self.tables[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown table '{name}' (tables: {', '.join(sorted(self.tables))})") from None

    def apply(self, name: str, batch: dict) -> int:
        """Appends a batch to a table; returns the rows added."""
        return self.table(name).append(batch)

    def update_indexes(self) -> None:
        """Brings every table's sym index up to date (after a bulk load, so the first query is fast)."""
        for table in self.tables.values():
            table.update_index()

    def counts(self) -> dict[str, int]:
        return {name: len(t) for name, t in self.tables.items()}

    def clear(self) -> None:
        """Drops every row (end of day), freeing the columns; the sym list is kept, as in kdb+."""
        self.tables = {name: Table(t.schema, self.syms) for name, t in self.tables.items()}
