"""Content addressed by SHA-256: how files are cut into blocks, and the server's block store.

``blocks`` is shared by the server and the agents (block sizes, manifests, splitting a file);
``blobstore`` is the server's filesystem store; ``ranges``, ``links`` and ``zipstream`` serve content
to members and browsers.
"""
