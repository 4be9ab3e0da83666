"""Lesson 01: the smallest Flask app. It answers "Hello world" at the address /."""
import os

from flask import Flask

# The application object. __name__ tells Flask where this file lives.
app = Flask(__name__)


@app.route("/")
def hello():
    """Answer a visit to / with a short text."""
    return "Hello world"


# True only when you run "python app.py", not when another program imports this file.
if __name__ == "__main__":
    # Heroku (and our tests) say which port to use in the PORT environment variable.
    app.run(port=int(os.environ.get("PORT", 5000)))
