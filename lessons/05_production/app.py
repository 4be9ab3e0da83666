"""Lesson 05: final_app, the production-shaped app, served from this folder.

gunicorn imports a "module:variable": here `app:app`, the variable `app` in this file.

    PORT=8000 gunicorn --config ../../gunicorn.conf.py app:app   # gunicorn with Heroku's settings, from this folder
    python app.py                                                # Flask's development server, to compare
"""
import os
import pathlib
import sys

# final_app lives at the top of the repository, two folders up: make it importable from here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from final_app.app import app  # noqa: E402  (the import needs the path above)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
