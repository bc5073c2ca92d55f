"""Run the whole system in one process (embedded mode): web + Socket.IO, the follow-up and periodic
jobs in a thread, and optionally the simulator. Server mode runs the same pieces as separate processes."""

from __future__ import annotations

import logging
import os
import threading

from flask import Flask

from .extensions import socketio

log = logging.getLogger(__name__)


def serve_forever(
    app: Flask, host: str = "127.0.0.1", port: int = 5000, simulate: bool = False, speed: float = 1.0
) -> None:
    settings = app.config["SETTINGS"]
    stop = threading.Event()
    if not settings.redis_url:
        from workers.schedule import SCHEDULE

        from .bulletin.jobs import fail_interrupted_builds
        from .db import db
        from .jobs import run_in_process

        with app.app_context():
            try:
                fail_interrupted_builds()
            finally:
                db.remove()
        threading.Thread(target=run_in_process, args=(app, stop, SCHEDULE), daemon=True, name="jobs").start()
    if simulate:
        from .demo.simulator import run_simulator

        threading.Thread(
            target=run_simulator, kwargs={"app": app, "speed": speed, "stop_event": stop}, daemon=True, name="simulator"
        ).start()
    # `flask serve` sets this, and Flask then refuses app.run(); this command is meant to serve
    os.environ.pop("FLASK_RUN_FROM_CLI", None)
    print(f"\n  指挥中心已启动: http://{host}:{port}/   ({settings.mode} 模式)\n", flush=True)
    try:
        socketio.run(app, host=host, port=port, allow_unsafe_werkzeug=True, use_reloader=False, log_output=False)
    finally:
        stop.set()
