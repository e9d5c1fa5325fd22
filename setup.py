"""Build the optional C speed-ups; legato works without them (pure-Python fallback)."""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Never fail an install because a C compiler is missing: the fallback is pure Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "use the fallback"
            print(f"legato: C speed-ups not built ({exc}); using the pure-Python fallback")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"legato: {ext.name} not built ({exc}); using the pure-Python fallback")


ext_modules = []
if os.environ.get("LEGATO_NO_EXTENSIONS") != "1":
    ext_modules.append(
        Extension(
            "legato.protocol._speedups",
            sources=["src/legato/protocol/_speedups.c"],
            optional=True,
        )
    )
    # Writes straight to the socket (src/legato/server/direct.py falls back to Python).
    ext_modules.append(
        Extension(
            "legato.server._direct",
            sources=["src/legato/server/_direct.c"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
