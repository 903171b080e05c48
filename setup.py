"""Build the optional native accelerators in native/ (abi3, Python 3.11+).

Each extension is optional: when no C compiler is present the install still succeeds and
the Python side falls back to its pure-Python/NumPy twin with the identical signature
(gateway.rtp.udpbatch, gateway.rtp.tickrecv, gateway.rtp.relayhub).
"""
from pathlib import Path

from setuptools import Extension, setup

# module -> (sources, libraries)
MODULES = {
    # recvmmsg/sendmmsg over NumPy buffers, the two-party relay batch, RTP stream statistics
    "gateway._udpbatch": (["native/udpbatch.c", "native/relay.c", "native/rtpstats.c"], []),
    # conference legs drained, jitter-pulled, mixed and sent once per 20 ms tick
    "gateway._mixrecv": (["native/mixrecv.c"], ["m"]),
    # relayed legs woken through one epoll set
    "gateway._relayhub": (["native/relayhub.c"], []),
}
ext_modules = [
    Extension(
        name,
        sources=[p for p in sources if Path(p).exists()],
        depends=[str(p) for p in Path("native").glob("*.h")],
        libraries=libraries,
        define_macros=[("Py_LIMITED_API", "0x030B0000")],
        py_limited_api=True,
        optional=True,
    )
    for name, (sources, libraries) in MODULES.items()
    if Path(sources[0]).exists()
]

setup(ext_modules=ext_modules, options={"bdist_wheel": {"py_limited_api": "cp311"}})
