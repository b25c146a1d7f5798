"""Built-in face analysis: detect faces (dlib HOG), embed them (dlib ResNet), follow them into traces.

Everything runs offline from files shipped in the ``dlib-bin`` and ``face-recognition-models``
packages; nothing is downloaded at run time. The entry point for commands and tasks is
:func:`media_api.faces.pipeline.detect_faces`.
"""
