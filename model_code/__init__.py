"""Code your models need when they predict: the helper functions their pipelines call.

A pickled model keeps only the name of a function it uses, like model_code.listings.date_parts,
and imports it again when it is loaded. gunicorn loads the model in a fresh Python started from
the top of the repository, so the function must live in a module that Python finds from there:
this package, committed and pushed with the model (outside lessons/, which Heroku removes).
"""
