"""The cast: who is in a file, and the page that names them.

- :mod:`~identities.cast.page`: the cast page's thin views and JSON actions (``/admin/cast/``).
- :mod:`~identities.cast.service`: what the page reads and writes (writes through
  :mod:`identities.curation`, so each is recorded and undoable).
- :mod:`~identities.cast.grouping`: the kept grouping of unnamed traces.
- :mod:`~identities.cast.graph`: the cast graph and timelines as inline SVG (admin file page).
- :mod:`~identities.cast.views`: the REST co-occurrence views (cast graph, files two people share).
- :mod:`~identities.cast.urls`: the cast page's routes.

Templates, static files and the ``cast_tags`` template library stay in the ``identities`` app,
where Django finds them.
"""
