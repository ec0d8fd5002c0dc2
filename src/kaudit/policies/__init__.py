"""Audit policies shipped with kaudit (``default.yaml``: the one ``kaudit setup apiserver`` writes)."""
