"""The web wing: what `python app.py` serves, one module per job.

server (FastAPI + Gradio, started by app.py) · ui (the Gradio page and its handlers) · api (the JSON
and build routes) · builds (the app's side of the `qa build` hand-off) · adding (the "Add articles"
panel) · render (all HTML, CSS and Markdown) · limits (each route's body size limit, JSON parsed within it).
"""

from ..config import offline

offline()  # before any module here imports gradio or huggingface_hub: no analytics, no telemetry, no downloads
