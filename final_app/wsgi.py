"""What gunicorn imports (the Procfile's final_app.wsgi:app): the app, built once, or exit status 4 with one line.

create_app() lives in final_app/app.py, which loads nothing when imported: tests and lessons
build their own apps from it, with their own settings and models.
"""
from final_app.app import create_app_or_exit

app = create_app_or_exit()
