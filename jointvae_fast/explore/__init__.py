"""An interactive latent explorer in the browser: `python -m jointvae_fast.explore SOURCE`.

load.build_explorer(SOURCE) -> session.Explorer (model, KL per latent, test images) -> server.serve(...)
(a ThreadingHTTPServer; the API is listed in server.py) -> static/ (plain HTML/JS/CSS, no build step).
"""
from .load import build_explorer
from .server import serve
from .session import ApiError, Explorer

__all__ = ["build_explorer", "serve", "ApiError", "Explorer"]
