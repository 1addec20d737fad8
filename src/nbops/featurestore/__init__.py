"""The feature store: feature groups and their commits, point-in-time joins, statistics,
expectations, drift, and the online store that serves the latest values by key."""
