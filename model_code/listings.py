"""Helpers for the flat-price model of lesson 08, used inside its scikit-learn pipeline."""
import re

import pandas as pd


def date_parts(frame):
    """Return each date column of frame as three number columns: year, month and day of the week."""
    parts = {}
    for name, dates in frame.items():
        parts[f"{name}_year"] = dates.dt.year
        parts[f"{name}_month"] = dates.dt.month
        parts[f"{name}_day_of_week"] = dates.dt.day_of_week  # 0 is Monday
    return pd.DataFrame(parts, index=frame.index)


def words(text):
    """Return the words of a text in lower case: "Sunny flat, renovated." -> ["sunny", "flat", "renovated"]."""
    return re.findall(r"[a-z]+", text.lower())
