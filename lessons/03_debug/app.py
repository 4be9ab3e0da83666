"""Lesson 03: debug mode. This app has a bug on purpose, so there is something to debug.

Debug mode is OFF unless you ask for it, and you only ask for it on your own machine:

    flask --app app run --debug        # or: FLASK_DEBUG=1 python app.py
"""
import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def home():
    """Answer the front page."""
    return "Version 1 of the app"


@app.route("/ratio/<int:top>/<int:bottom>")
def ratio(top, bottom):
    """Divide two whole numbers from the URL. The bug: nothing stops bottom being 0."""
    return f"{top} / {bottom} = {top / bottom}"


if __name__ == "__main__":
    # No debug= here: app.run() keeps debug off unless FLASK_DEBUG=1 is set.
    app.run(port=int(os.environ.get("PORT", 5000)))
