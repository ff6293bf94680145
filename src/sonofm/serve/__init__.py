"""``sonofm serve``: a local web page to try models on your own images (the ``serve`` extra: Starlette + uvicorn).

app (routes), http (reading requests safely), security (host, origin and response-header guards), sessions (uploads
in memory), models (the served models and their locks), classify / segment / enhance / asam (one model adapter per
task), fan, rendering (PNGs, overlays, areas), server (uvicorn), static/ (the page: index.html, app.js, style.css).
"""
