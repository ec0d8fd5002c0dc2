"""The dashboard: server-rendered pages over the store, each with a JSON twin.

* :mod:`.app` — the routes (pages under ``/ui``, JSON under ``/api/v1``), login and
  the session cookie, CSRF on every state-changing form.
* :mod:`.session` — signed session ids and CSRF tokens (HMAC, a per-process key).
* :mod:`.timerange` — the range every page is about (presets relative to the newest
  stored event).
* :mod:`.pages` — one module per page, each returning plain data (the JSON twin);
  the templates render that same data.
* :mod:`.charts` — small SVG charts rendered on the server (no JavaScript needed).
* :mod:`.alertstate` — acknowledge/suppress state of alerts, under ``<store>/ui/``.

Every asset ships in the package (``templates/``, ``static/``): no CDN, works
air-gapped.
"""
