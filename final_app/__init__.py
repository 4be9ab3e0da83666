"""final_app: a Flask service that serves the iris classifier (gunicorn target final_app.wsgi:app)."""
