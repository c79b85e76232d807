"""The demo as a Hugging Face Space (Gradio SDK): this file runs unchanged there and here (``python app.py``).

Locally, ``subobject-vlm demo`` serves the same page. A Space installs ``requirements.txt`` and imports the
package from the ``subobject_vlm/`` folder next to this file (the numpy fallback of EPOC's flooding kernel
runs where it is not compiled); it works offline with the embedded default boundary model.
"""

from subobject_vlm.demo import LAUNCH_OPTIONS, build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**LAUNCH_OPTIONS)
