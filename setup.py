"""The native part of kaudit: an optional C extension (everything works without it).

``kaudit.store._scan`` reads the common shape of apiserver JSON lines straight into
the flat schema's columns; when it cannot be built, ``kaudit ingest`` uses the exact
Python reader for every line (slower, same result).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "kaudit.store._scan",
            ["src/kaudit/store/_scan.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
