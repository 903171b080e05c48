"""Build the optional batched-UDP accelerator in native/.

The extension is optional: when no C compiler is present the install still
succeeds and gateway.rtp.udpbatch falls back to a pure-Python implementation
with the identical signature.
"""
from pathlib import Path

from setuptools import Extension, setup

sources = [p for p in ["native/udpbatch.c", "native/relay.c", "native/rtpstats.c"] if Path(p).exists()]
ext_modules = (
    [
        Extension(
            "gateway._udpbatch",
            sources=sources,
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            py_limited_api=True,
            optional=True,
        )
    ]
    if sources
    else []
)

setup(ext_modules=ext_modules, options={"bdist_wheel": {"py_limited_api": "cp311"}})
