"""Real-time delivery: Socket.IO v5 over Engine.IO v4 on aiohttp, and the hub that fans events out.

- ``protocol``: sans-I/O codecs for Engine.IO and Socket.IO packets and WebSocket text frames.
- ``session``: one client connection, whatever its transport; knows how to queue or write packets.
- ``hub``: project channels and subscriptions; orders events, replays from the store, fans out.
- ``transport``: the aiohttp handlers for ``/socket.io/`` (polling, WebSocket, upgrade) and the
  Socket.IO events clients send (``subscribe:project``, ``unsubscribe:project``).
"""
