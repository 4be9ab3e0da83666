"""Lesson 06: a small app that misbehaves on purpose, to meet Heroku's errors on your laptop first.

    GET /                 -> "ok"
    GET /slow?seconds=N   -> answers after N seconds (Heroku's router gives up after 30: H12)

At start-up it fills BIG_MODEL_MB megabytes of memory (default 0), as loading a big model would.

    BIG_MODEL_MB=300 gunicorn --config ../../gunicorn.conf.py app:app
"""
import os
import time

from flask import Flask, request

MAX_SLOW_SECONDS = 60

# Filled with ones, not zeros: the operating system only really hands out memory that is written.
big_model = b"\x01" * (int(os.environ.get("BIG_MODEL_MB", "0")) * 2**20)

app = Flask(__name__)


@app.get("/")
def index():
    """Say the app is up."""
    return "ok\n"


@app.get("/slow")
def slow():
    """Wait ?seconds=N seconds (at most MAX_SLOW_SECONDS), then answer."""
    seconds = request.args.get("seconds", default=1.0, type=float)
    if not 0 <= seconds <= MAX_SLOW_SECONDS:
        return {"error": {"message": f"seconds must be between 0 and {MAX_SLOW_SECONDS}"}}, 400
    time.sleep(seconds)
    return f"answered after {seconds:g} s\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
