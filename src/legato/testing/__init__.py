"""The machinery behind :class:`legato.TestClient`, one concept per module.

* ``transport``: an in-memory connection; the server's end is an asyncio Transport.
* ``loop``: the event loop thread and bounded calls into it from the test thread.
* ``server``: legato's server over in-memory connections; records each app call.
* ``runner``: one such server on its loop thread, as a TestClient owns it.
* ``requests``/``bodies``/``cookies``: building requests as browsers and httpx do.
* ``http``/``responses``: reading a response off the wire; what a test gets back.
* ``websocket``: the protocol core's client role and the synchronous session.
"""
