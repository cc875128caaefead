"""``agi-bridge call``: one outbound call in which an agent works toward a goal.

    agi-bridge call DESTINATION --agent NAME --goal "..." [--json]

How a call is placed (verified on Asterisk 22.10.1, see tests/e2e/test_outbound_ivr.py):

* The command runs its own :class:`~agi_bridge.app.Bridge` on ephemeral FastAGI and
  AudioSocket ports, with its own AMI connection, so it works next to a running
  ``agi-bridge serve`` without clashing with it.
* It sends ``Originate`` (``Async``, a fresh ``ChannelId``) to the destination with
  ``Context=agi-bridge-agent Exten=<agent> Priority=1`` and the channel variables
  ``AGI_BRIDGE_HOST`` / ``AGI_BRIDGE_AGI_PORT`` / ``AGI_BRIDGE_AUDIOSOCKET_PORT``: the
  settings Gosub of the dialplan prefers channel variables, so once the callee answers
  the call takes the same FastAGI + AudioSocket path as an inbound call, to this process.
  Its FastAGI server accepts only the request whose ``agi_uniqueid`` is that ChannelId.
* The agent is the configured one with the goal added to its instructions, the IVR
  guidance on, ``send_dtmf`` and ``hangup`` enabled and no greeting (the callee speaks
  first). It is told to end with ``hangup(reason="goal achieved: ...")``.
* Destinations: a channel (``PJSIP/6002``, ``PJSIP/5551234@trunk``, ``Local/500@ctx``), or
  a plain number, dialed as ``Local/NUMBER@<outbound.dial_context>``. For a ``Local/``
  destination the agent runs on the ``;1`` half; ``PlayDTMF`` on it reaches the ``;2``
  half, where the far end's dialplan (``Background``/``WaitExten``/``Read``) reads it.
* Outcomes come from Asterisk: the ``OriginateResponse`` event (``Reason`` 3 no answer
  after the ring timeout, 5 busy, 8 congestion, 0 the channel could not be created:
  unknown or unregistered endpoint, no such extension), ``Hangup`` events (cause), and
  the call's end (the agent's hangup reason, the far end hanging up). Every wait is
  bounded by ``--timeout``; nothing hangs.

Exit codes (:data:`EXIT_CODES`): 0 goal achieved, 1 goal not achieved, 2 usage or
configuration error, 3 remote hung up, 4 no answer, 5 busy, 6 congestion, 7 failed,
8 timeout, 9 answering machine (--amd hangup), 10 stuck, 11 dead air (agi-bridge test),
12 voicemail left (--amd message), 130 interrupted.

Per-call context: ``{caller_id}``, ``{dnid}`` (the destination) and ``--var KEY=VALUE``
are substituted into the goal, the agent's instructions and its greeting
(agi_bridge/prompt_context.py). ``--amd POLICY`` runs Asterisk's AMD() on the answered
leg first ([agi-bridge-amd] in the shipped dialplan) and reports ``amd`` {status: HUMAN |
MACHINE | NOTSURE, cause}; a machine is hung up on, gets a message after its beep, or is
talked to. ``--csv FILE --concurrency N`` places one call per row (each
with its own bridge), N at a time; exit code 0 when every goal was achieved, else 1.
"""

from agi_bridge.outbound.call import OutboundCall
from agi_bridge.outbound.cli import add_cli, format_batch, format_result, read_csv, run_cli
from agi_bridge.outbound.result import (
    EXIT_CODES,
    EXIT_USAGE,
    GOAL_ACHIEVED,
    GOAL_INSTRUCTIONS,
    GOAL_NOT_ACHIEVED,
    ORIGINATE_REASONS,
    OUTCOME_TEXT,
    CallResult,
    bridge_host,
    dial_string,
    goal_config,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_USAGE",
    "GOAL_ACHIEVED",
    "GOAL_INSTRUCTIONS",
    "GOAL_NOT_ACHIEVED",
    "ORIGINATE_REASONS",
    "OUTCOME_TEXT",
    "CallResult",
    "OutboundCall",
    "add_cli",
    "bridge_host",
    "dial_string",
    "format_batch",
    "format_result",
    "goal_config",
    "read_csv",
    "run_cli",
]
