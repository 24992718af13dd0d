"""Generate reviews.csv: 120 short product reviews, deterministic (seeded), no network.

Run: python make_reviews.py  (the CSV it writes is committed next to it)
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

PRODUCTS = ["kettle", "toaster", "blender", "desk lamp", "office chair", "backpack",
            "headphones", "coffee grinder", "rice cooker", "electric toothbrush"]
POSITIVE = ["I love this {p}, it works perfectly.", "Great {p} for the price, very happy.",
            "Excellent {p}. Would buy again.", "Perfect {p}, arrived early and works great."]
NEGATIVE = ["The {p} arrived broken. Terrible.", "Worst {p} I have owned, asked for a refund.",
            "Bad {p}: stopped working after a week.", "Disappointed with this {p}, it broke."]
NEUTRAL = ["It is a {p}. Does what a {p} does.", "The {p} came in a box.",
           "Bought this {p} for my sister.", "The {p} is blue."]


def main() -> None:
    rng = random.Random(20261123)
    out = Path(__file__).with_name("reviews.csv")
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review_id", "product", "stars", "review_text"])
        for i in range(1, 121):
            p = rng.choice(PRODUCTS)
            kind = rng.choice([POSITIVE, NEGATIVE, NEUTRAL])
            stars = {id(POSITIVE): rng.randint(4, 5), id(NEGATIVE): rng.randint(1, 2),
                     id(NEUTRAL): 3}[id(kind)]
            w.writerow([i, p, stars, rng.choice(kind).format(p=p)])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
