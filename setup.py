"""Everything is in setup.cfg; this only adds the optional C speedup (see highlight_logging/_speedups.c).

``optional=True``: without a compiler the install still succeeds, and the package runs pure
Python (see ``highlight_logging._core.native``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "highlight_logging._speedups",
            ["highlight_logging/_speedups.c"],
            optional=True,
        )
    ]
)
