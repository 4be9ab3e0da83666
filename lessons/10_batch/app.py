"""Lesson 10: the API side of the batch command, serving the same model (lesson 08's penguin species).

python -m final_app.score checks each row of a file as this app checks each row of a request, with
the same model folder: the notebook sends a row the command refused to this app, and gets the same
message. Serve another model with MODEL_DIR, as everywhere:

    python app.py                                  # http://127.0.0.1:5000, the penguin species
    flask --app app run                            # the same app, started by the flask command
"""
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
PENGUINS = HERE.parent / "08_own_model" / "models" / "penguins"

# final_app lives at the top of the repository, two folders up: make it importable from here.
sys.path.insert(0, str(HERE.parents[1]))
# final_app.wsgi builds the app, reading MODEL_DIR, when it is imported: so set the default before the import
# (an empty MODEL_DIR counts as not set, as in final_app).
if not os.environ.get("MODEL_DIR"):
    os.environ["MODEL_DIR"] = str(PENGUINS)

from final_app.wsgi import app  # noqa: E402  (the import needs the two lines above)

if __name__ == "__main__":
    # debug=False wins over FLASK_DEBUG: app.run() would otherwise turn the debugger on.
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), debug=False)
