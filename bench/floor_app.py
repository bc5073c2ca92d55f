"""The cheapest Flask intake there can be, for `bench/bench_floor.py`: parse the JSON body, one
`INSERT … ON CONFLICT DO NOTHING` into a one-table database, commit, answer 201. No login, no validation,
no grid lookup, no rate limit, no case number, no history step, no outbox, no push. Not part of the app."""

from __future__ import annotations

import json
import os

from flask import Flask, request
from psycopg2.pool import ThreadedConnectionPool

app = Flask(__name__)
pool = ThreadedConnectionPool(1, 32, os.environ["FLOOR_DSN"])


@app.post("/r")
def report():
    body = request.get_json()
    conn = pool.getconn()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO floor_cases (k, body) VALUES (%s, %s) ON CONFLICT (k) DO NOTHING RETURNING id",
                (body["client_key"], json.dumps(body)),
            )
            row = cur.fetchone()
        conn.commit()
    finally:
        pool.putconn(conn)
    return {"id": row[0] if row else None}, 201
