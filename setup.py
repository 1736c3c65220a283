"""Everything is in setup.cfg; this only adds the optional C speedup (see highlight_logging/_speedups.c).

``optional=True``: without a compiler the install still succeeds, and the package uses the
pure-Python path (``highlight_logging._export.fastpath``).
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
