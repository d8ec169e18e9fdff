"""Datasets: shard and raw-dataset readers returning one sample dict in the mano21 layout."""
