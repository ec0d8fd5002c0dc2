"""Audit policies shipped with kaudit.

``default.yaml`` is the policy ``kaudit setup apiserver`` installs.
"""
