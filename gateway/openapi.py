"""The OpenAPI 3 description of the gateway's HTTP JSON API (served at GET /openapi.json).

It states the limits the server enforces (non-empty names, at most 1,000 trades in a basket, no
unknown fields) and every error status it gives, so a client generated from it, or a fuzzer
checking the server against it (tests/test_gateway_fuzz.py), sees the server as it is.
"""
from gateway.api import MAX_TRADES, TIMESTAMP_TEXT
from gateway.recon import MAX_RECON_N

_NAME = {"type": "string", "minLength": 1}
_QTY = {"type": "number", "not": {"enum": [0]}, "description": "signed, buy > 0"}
_ACCOUNT = {"name": "account", "in": "query", "required": True, "schema": _NAME}
_TARGET = {"type": "number", "minimum": 0, "description": "the call to get under (default 0: no call)"}
_NUMBER = {"type": "number", "nullable": True, "description": "null: not a number (NaN), e.g. no stress"}
_HEDGE_POINT = {"type": "object", "nullable": True, "required": ["qty", "requirement", "call", "stress_call"],
                "properties": {"qty": {"type": "number", "description": "the hedge trade to add, signed"},
                               "requirement": _NUMBER, "call": _NUMBER, "stress_call": _NUMBER}}
_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ROWS = {"description": "rows", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rows"}}}}
_HEDGE_RESULT = {"description": "result", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/HedgeResult"}}}}
_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "405": _ERROR, "408": _ERROR, "413": _ERROR,
           "429": _ERROR, "500": _ERROR, "504": _ERROR}

OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "margintick gateway", "version": "1.0",
             "description": "Predicted margin, what-if (pre-trade), hedge sizing, positions, alerts. Authenticate with "
                            "HTTP Basic (user:password) or a Bearer token. Timestamps are ISO-8601 UTC "
                            "with nanoseconds; nulls are JSON null."},
    "components": {
        "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                            "bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string", "example": "access: user trader1 is not entitled to account FUND2"}}},
            "Rows": {"type": "array", "items": {"type": "object"}},
            "Trade": {"type": "object", "required": ["sym", "qty"], "additionalProperties": False,
                      "properties": {"sym": _NAME, "qty": _QTY,
                                     "price": {"type": "number", "nullable": True, "description": "null: last price"}}},
            "WhatIf": {"type": "object", "additionalProperties": False,
                       "description": "one trade (sym, qty, price) or a basket (trades)",
                       "oneOf": [{"required": ["account", "trades"],
                                  "not": {"anyOf": [{"required": [f]} for f in ("sym", "qty", "price")]}},
                                 {"required": ["account", "sym", "qty"], "not": {"required": ["trades"]}}],
                       "properties": {"account": _NAME,
                                      "trades": {"type": "array", "minItems": 1, "maxItems": MAX_TRADES,
                                                 "items": {"$ref": "#/components/schemas/Trade"}},
                                      "sym": _NAME, "qty": _QTY,
                                      "price": {"type": "number", "nullable": True}}},
            "Hedge": {"type": "object", "additionalProperties": False, "required": ["account", "sym"],
                      "properties": {"account": _NAME, "sym": _NAME, "target": {**_TARGET, "nullable": True}}},
            "HedgeResult": {"type": "object", "required": ["sym", "model", "price", "held", "now", "minimum", "target",
                                                           "scenario", "curve", "evaluations"],
                            "properties": {
                                "sym": {"type": "string"}, "model": {"type": "string"}, "price": {"type": "number"},
                                "held": {"type": "number"}, "now": {"type": "object"}, "minimum": _HEDGE_POINT,
                                "target": {"type": "object", "properties": {
                                    "value": {"type": "number"}, "call": _HEDGE_POINT, "stress": _HEDGE_POINT,
                                    "reason": {"type": "object", "description": "why call / stress is null"}}},
                                "scenario": {"type": "string", "description": "the stress scenario; empty: none"},
                                "curve": {"$ref": "#/components/schemas/Rows"},      # qty, requirement, call, stress
                                "evaluations": {"type": "integer"}}},
            "WhatIfResult": {"type": "object", "properties": {
                "before": {"type": "object"}, "after": {"type": "object"}, "delta": {"type": "object"},
                "drivers": {"$ref": "#/components/schemas/Rows"}}},
        },
    },
    "security": [{"basic": []}, {"bearer": []}],
    "paths": {
        "/margin": {"get": {"summary": "latest margin row per account (all entitled accounts when none given)",
                            "parameters": [{"name": "account", "in": "query", "required": False,
                                            "schema": {"type": "string"}, "description": "comma-separated"}],
                            "responses": {"200": _ROWS, **_ERRORS}}},
        "/whatif": {"post": {"summary": "pre-trade what-if: margin before / after / delta of one trade or a basket",
                             "requestBody": {"required": True, "content": {"application/json": {
                                 "schema": {"$ref": "#/components/schemas/WhatIf"}}}},
                             "responses": {"200": {"description": "result", "content": {"application/json": {
                                 "schema": {"$ref": "#/components/schemas/WhatIfResult"}}}}, **_ERRORS}}},
        "/hedge": {
            "get": {"summary": "hedge sizing: the quantity of sym minimising the requirement, the smallest ones "
                               "bringing the call and the stress call under target, the curve",
                    "parameters": [_ACCOUNT, {"name": "sym", "in": "query", "required": True, "schema": _NAME},
                                   {"name": "target", "in": "query", "required": False, "schema": _TARGET}],
                    "responses": {"200": _HEDGE_RESULT, **_ERRORS}},
            "post": {"summary": "hedge sizing, the arguments as a JSON object",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Hedge"}}}},
                     "responses": {"200": _HEDGE_RESULT, **_ERRORS}}},
        "/positions": {"get": {"summary": "positions of an account", "parameters": [_ACCOUNT],
                               "responses": {"200": _ROWS, **_ERRORS}}},
        "/drivers": {"get": {"summary": "positions driving an account's requirement", "parameters": [_ACCOUNT],
                             "responses": {"200": _ROWS, **_ERRORS}}},
        "/stress": {"get": {"summary": "stress test of an account", "parameters": [
            _ACCOUNT, {"name": "scenario", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "result"}, **_ERRORS}}},
        "/alerts": {"get": {"summary": "alerts of the day", "parameters": [
            {"name": "account", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "since", "in": "query", "required": False,
             "description": "ISO-8601 (2026-11-21T05:00:00) or q (2026.11.21D05:00:00) timestamp, UTC",
             "schema": {"type": "string", "pattern": "^" + TIMESTAMP_TEXT.pattern}}],
            "responses": {"200": _ROWS, **_ERRORS}}},
        "/recon": {"get": {"summary": "live parallel run: an account's recon rows of its last n CCP figures and the accuracy per model",
                           "parameters": [_ACCOUNT, {"name": "n", "in": "query", "required": False,
                                                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RECON_N}}],
                           "responses": {"200": {"description": "rows and accuracy", "content": {"application/json": {
                               "schema": {"type": "object", "properties": {
                                   "rows": {"$ref": "#/components/schemas/Rows"},
                                   "accuracy": {"$ref": "#/components/schemas/Rows"}}}}}}, **_ERRORS}}},
        "/rules": {"get": {"summary": "alert rules in force for the accounts the user sees (latest row per rule id)",
                           "parameters": [{"name": "account", "in": "query", "required": False,
                                           "schema": {"type": "string"}, "description": "comma-separated"}],
                           "responses": {"200": _ROWS, **_ERRORS}}},
        "/setrule": {"post": {"summary": "create, change or disable an alert rule (docs/notify.md)",
                              "requestBody": {"required": True, "content": {"application/json": {"schema": {
                                  "type": "object", "required": ["id", "scope", "kind", "level"],
                                  "properties": {"id": _NAME, "scope": {"type": "string",
                                                                        "enum": ["account", "desk", "all"]},
                                                 "target": {"type": "string"},
                                                 "kind": {"type": "string", "enum": ["threshold", "callbuffer",
                                                                                     "stresscall", "imjump", "excess", "recon"]},
                                                 "level": {"type": "number"}, "window": {"type": "number"},
                                                 "severity": {"type": "string", "enum": ["warn", "high"]},
                                                 "channels": {"type": "string"}, "enabled": {"type": "boolean"}}}}}},
                              "responses": {"200": {"description": "the rule as published, with its seq"},
                                            **_ERRORS}}},
        "/ack": {"post": {"summary": "acknowledge an account's open alert episode (its reminders stop)",
                          "requestBody": {"required": True, "content": {"application/json": {"schema": {
                              "type": "object", "required": ["account"],
                              "properties": {"account": _NAME, "kind": {"type": "string"},
                                             "note": {"type": "string"}}}}}},
                          "responses": {"200": {"description": "the ack as recorded, with its seq"}, **_ERRORS}}},
        "/stream": {"get": {"summary": "server-sent events: `margin` and `alert` rows as they are published",
                            "parameters": [
                                {"name": "tables", "in": "query", "required": False,
                                 "schema": {"type": "string", "default": "margin,alert"}},
                                {"name": "account", "in": "query", "required": False, "schema": {"type": "string"}},
                                {"name": "conflate", "in": "query", "required": False,
                                 "description": "milliseconds: one margin event per period with the newest row per "
                                                "(account, model); alerts are never conflated",
                                 "schema": {"type": "integer", "minimum": 0, "maximum": 10000}}],
                            "responses": {"200": {"description": "text/event-stream; event = table name, data = JSON rows",
                                                  "content": {"text/event-stream": {}}}, **_ERRORS}}},
        "/openapi.json": {"get": {"summary": "this document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3 document"}}}},
    },
}
