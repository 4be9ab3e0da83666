"""Lesson 02: routes. The argument of @app.route() is the path part of the URL."""
import os

from flask import Flask, request
from markupsafe import escape

app = Flask(__name__)


@app.route("/")
def home():
    """Answer the front page."""
    return "Home page"


@app.route("/hi")
def hi():
    """Answer the fixed path /hi."""
    return "Hi there!"


@app.route("/hello/<name>")
def hello(name):
    """Greet whatever name is written in the URL, made harmless first."""
    # The name comes from the visitor: escape() turns <, >, & and quotes into plain text.
    return f"Hello, {escape(name)}!"


@app.route("/echo", methods=["GET", "POST"])
def echo():
    """Tell the visitor which HTTP method they used; only GET and POST are allowed."""
    return f"You sent a {request.method} request"


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 5000)))
