"""Build the optional compiled EPOC flooding kernel; all other metadata lives in pyproject.toml.

Without a C compiler the extension is skipped (``optional=True``) and EPOC floods in numpy instead,
with identical results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "subobject_vlm.segmentation._flood",
            ["subobject_vlm/segmentation/_flood.pyx"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
