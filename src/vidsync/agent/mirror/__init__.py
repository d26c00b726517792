"""The collaborator's agent: ``vidsync join`` keeps a receive-only mirror of a shared project.

Modules, one job each: ``state`` (the mirror's database), ``safepath`` (which network paths may be
written here), ``disk`` (atomic file operations through safe descriptors), ``localedits`` (what
someone changed in the mirror), ``apply`` (one path brought in line with the owner's folder),
``fetch`` (content through the SDK, reusing local blocks), ``engine`` (snapshot, follow, apply),
``ui`` (progress bars and lines), ``revert``, ``status`` and ``cli``.
"""
