"""q-sql for quants: a parser and evaluator of a documented subset of q-sql over the rdb tables."""
