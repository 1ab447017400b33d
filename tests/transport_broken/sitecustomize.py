"""Put on PYTHONPATH of a server under test to play an upgrade that renamed an internal.

autobahn's PreparedMessage goes missing, as if a release had renamed it;
nothing in Daphne uses it, so only Choir's transport adapter can notice.
"""

import autobahn.websocket.protocol

del autobahn.websocket.protocol.PreparedMessage
