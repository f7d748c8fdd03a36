"""The web app (``smm web``): calendar, post previews, approval and engagement in a browser.

Server-rendered pages over the same database and queue functions as the CLI; see docs/web.md.
Needs the ``web`` extra (Starlette, Jinja2, uvicorn, argon2-cffi).
"""
