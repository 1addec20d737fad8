"""The snapshot benchmark's data: a deterministic 10-column frame, and a copy with one column changed."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    """A deterministic 10-column frame of typical transaction-table dtypes."""
    rng = np.random.default_rng(seed)
    n = rows
    categories = [
        f"{dept}/{kind}"
        for dept in ("grocery", "home", "garden", "toys", "books", "sports", "beauty", "auto")
        for kind in ("new", "used", "refurb", "promo", "bundle")
    ]  # 40 labels
    discount = np.round(rng.uniform(0.0, 0.3, n), 2)
    discount[rng.random(n) < 0.02] = np.nan  # 2% missing -> Arrow nulls
    start = np.datetime64("2024-01-01T00:00:00", "ns")
    offsets_ms = np.sort(rng.integers(0, 365 * 86_400_000, n))
    return pd.DataFrame(
        {
            "id": np.arange(1_000_000_000, 1_000_000_000 + n, dtype=np.int64),  # sequential key
            "customer_id": rng.integers(0, max(1, n // 10), n, dtype=np.int64),
            "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),  # money, cents
            "discount": discount,  # float64 with nulls
            "score": rng.random(n),  # model output, full precision float64
            "temperature": rng.normal(20.0, 5.0, n).astype(np.float32),
            "category": pd.Categorical.from_codes(rng.integers(0, len(categories), n), categories=categories),
            "created_at": start + offsets_ms.astype("timedelta64[ms]").astype("timedelta64[ns]"),
            "is_returned": rng.random(n) < 0.05,
            "quantity": rng.integers(1, 20, n, dtype=np.int64).astype(np.int32),
        }
    )


def change_one_column(df: pd.DataFrame, column: str, seed: int) -> pd.DataFrame:
    """A copy of ``df`` with 1% of ``column``'s values corrected (+10%)."""
    rng = np.random.default_rng(seed + 1)
    out = df.copy()
    values = out[column].to_numpy(copy=True)
    mask = rng.random(len(values)) < 0.01
    values[mask] = np.round(values[mask] * 1.1, 2)
    out[column] = values
    return out
