"""One shared AMI connection per process, over panoramisk 1.4.

panoramisk does the wire format (``Key: Value\\r\\n`` blocks, ActionID matching, event
dispatch). Its connection management has quirks we work around here (checked against
the 1.4 source):

* It reconnects on its own with a fixed ``reconnect_timeout`` through ``call_later``
  handles nobody can cancel, so a closed Manager can come back to life. We subclass it
  (:class:`BridgeManager`) to switch that off, and run our own supervisor: one fresh
  Manager per connection, exponential backoff, connect + login bounded by a timeout.
* A failed login only sets ``authenticated = False``; nothing retries or reports it.
  The supervisor treats it like a dropped connection.
* Unanswered actions are re-queued and replayed after the next login (on FullyBooted).
  A Hangup or Originate replayed minutes later is worse than a failed action, so our
  protocol fails them with :class:`AmiError` when the connection closes instead.
* ``Action.multi`` raises ``KeyError('async')`` inside ``data_received`` for any
  "... successfully queued" response to an action without an ``Async`` header (PlayDTMF),
  which kills the connection; for Originate with Async it waits for the
  OriginateResponse event. Sending every action with ``as_list=False`` avoids both: the
  first response completes the action, events go to listeners.
* Its pinger sends Ping without checking the answer, so a silent peer is never noticed.
  We ping ourselves and reconnect when a Ping times out.
* An exception in an event callback propagates into ``data_received`` and closes the
  connection; listener callbacks are isolated here.
* An empty last header (``Value: `` of Getvar) is lost by its parser: ``getvar`` returns
  None for it, which is also what Asterisk means (it sends "" for unset variables).
"""

from agi_bridge.asterisk.ami.client import AmiClient
from agi_bridge.asterisk.ami.manager import BridgeManager
from agi_bridge.asterisk.ami.message import AmiMessage, EventCallback

__all__ = ["AmiClient", "AmiMessage", "BridgeManager", "EventCallback"]
