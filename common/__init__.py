"""Pieces every margintick process shares: the schema parser, the wire codec, RPC and default endpoints."""
