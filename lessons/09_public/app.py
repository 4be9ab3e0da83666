"""Lesson 09: final_app open to the internet, with an API key, request ids and a prediction log.

    python app.py          # http://127.0.0.1:5000; POST /predict needs the lesson's key
    flask --app app run    # the same app, started by the flask command

The defaults below are for this lesson on your own machine only. On a server, set your own key:
heroku config:set API_KEYS=...  (the notebook shows how to make one and how to rotate it).
"""
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent

# final_app lives at the top of the repository, two folders up: make it importable from here.
sys.path.insert(0, str(HERE.parents[1]))

# final_app.wsgi builds the app, reading its settings, when it is imported: so set the lesson's
# defaults before the import.
# A key written in a file is no secret: this one is for this lesson on your own machine only.
LESSON_SETTINGS = {"API_KEYS": "lesson-09-key-not-a-secret", "REQUEST_IDS": "on", "PREDICTION_LOG": "on"}
for name, value in LESSON_SETTINGS.items():
    os.environ.setdefault(name, value)

from final_app.wsgi import app  # noqa: E402  (the import needs the lines above)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), debug=False)
