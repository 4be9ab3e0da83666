"""Lesson 05: final_app, the production-shaped app, served from this folder.

gunicorn imports a "module:variable": here `app:app`, the variable `app` in this file.

    PORT=8000 gunicorn --config ../../gunicorn.conf.py app:app   # gunicorn with Heroku's settings, from this folder
    python app.py                                                # Flask's development server, to compare

Debug stays off even with FLASK_DEBUG=1 python app.py. (`flask run --debug` still adds the
debugger around the app: that is for your own machine only.)
"""
import os
import pathlib
import sys

# final_app lives at the top of the repository, two folders up: make it importable from here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from final_app.wsgi import app  # noqa: E402  (the import needs the path above)

if __name__ == "__main__":
    # debug=False wins over FLASK_DEBUG: app.run() would otherwise turn the debugger on.
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), debug=False)
