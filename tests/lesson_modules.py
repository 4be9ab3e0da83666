"""Import a lesson's Python file as a module, without the lessons clashing over the name "app"."""
import importlib.util
import pathlib
import sys

LESSONS = pathlib.Path(__file__).resolve().parent.parent / "lessons"


def import_lesson_file(lesson, name="app"):
    """Import lessons/<lesson>/<name>.py afresh, registered as "lesson_<lesson>_<name>"."""
    spec = importlib.util.spec_from_file_location(f"lesson_{lesson}_{name}", LESSONS / lesson / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
