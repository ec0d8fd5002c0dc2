"""Questions over the store: the flat schema, friendly filters, investigations, output.

Kept free of imports so that ``kaudit query`` starts fast: import the submodules
(:mod:`kaudit.query.api` for the Python API).
"""
