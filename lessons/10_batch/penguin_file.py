"""Lesson 10: write a big CSV of penguins to score, with some rows spoiled the way real exports spoil them.

    python penguin_file.py penguins.csv 200000     # 200,000 rows, 1 % of them bad

The rows are the 344 Palmer penguins over and over, in the columns lesson 08's species model
takes (missing values and all). One row in a hundred is spoiled in one of three ways, in turn:
an island the model never saw, a bill length typed with a decimal comma, an island left empty.
"""
import sys

import numpy as np

COLUMNS = ["island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# What goes wrong in a real export, one kind per bad row in turn: (column, the value written).
SPOILERS = [("island", "Atlantis"), ("bill_length_mm", "39,1"), ("island", None)]


def penguin_rows(count):
    """Return count penguin rows (the 344 of the data set, repeated) as a DataFrame of objects."""
    from palmerpenguins import load_penguins

    penguins = load_penguins()[COLUMNS].astype(object)
    return penguins.iloc[np.arange(count) % len(penguins)].reset_index(drop=True)


def spoil(frame, share=0.01, seed=0):
    """Spoil a share of the rows in place, in turn one of each kind; return the spoiled rows' numbers, sorted."""
    rng = np.random.default_rng(seed)
    bad = np.sort(rng.choice(len(frame), int(len(frame) * share), replace=False))
    for kind, (column, value) in enumerate(SPOILERS):
        frame.loc[bad[kind::len(SPOILERS)], column] = value
    return bad


def write_csv(path, count, share=0.01, seed=0):
    """Write count penguin rows to a CSV file, a share of them spoiled; return the spoiled rows' numbers."""
    frame = penguin_rows(count)
    bad = spoil(frame, share, seed)
    frame.to_csv(path, index=False)
    return bad


if __name__ == "__main__":
    spoiled = write_csv(sys.argv[1], int(sys.argv[2]))
    print(f"wrote {sys.argv[2]} rows to {sys.argv[1]}, {len(spoiled)} of them spoiled")
