"""Lesson 08: final_app serving your own model, from this folder.

final_app loads the model saved in the folder MODEL_DIR names. Here MODEL_DIR defaults to
models/penguins, the species classifier next to this file; set it to serve another one:

    python app.py                                  # http://127.0.0.1:5000, the penguin species
    flask --app app run                            # the same app, started by the flask command
    MODEL_DIR=models/penguin_mass python app.py    # the body-mass regressor instead
    MODEL_DIR=models/flat_prices python app.py     # flat prices, from dates and the text of ads

Debug stays off even with FLASK_DEBUG=1 python app.py. (`flask run --debug` still adds the
debugger around the app: that is for your own machine only.)
"""
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent

# final_app lives at the top of the repository, two folders up: make it importable from here.
sys.path.insert(0, str(HERE.parents[1]))
# final_app.wsgi builds the app when it is imported, with MODEL_DIR as it is then, so set the
# default before the import (an empty MODEL_DIR counts as not set, as in final_app).
if not os.environ.get("MODEL_DIR"):
    os.environ["MODEL_DIR"] = str(HERE / "models" / "penguins")

from final_app.wsgi import app  # noqa: E402  (the import needs the two lines above)

if __name__ == "__main__":
    # debug=False wins over FLASK_DEBUG: app.run() would otherwise turn the debugger on.
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), debug=False)
