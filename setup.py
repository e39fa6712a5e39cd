"""Build of the one compiled module: the kernel TRACE log summary (tracelog/_fastsummary.c).

It is optional: without a C compiler nodetrace installs and works the same, only
``log --summary`` on large logs is slower (tracelog/fast_summary.py falls back to Python).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "nodetrace.tracelog._fastsummary",
            ["src/nodetrace/tracelog/_fastsummary.c"],
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
