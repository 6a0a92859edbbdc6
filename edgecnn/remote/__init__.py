"""Device side: boards over SSH with the system OpenSSH client: run the board's own edgecnn there, copy artifacts
into a content-addressed cache on it, a fleet of named boards, and safe deployment (stage, verify, switch, restart,
watch, roll back).

Only the standard library and the ``ssh``/``scp``/``rsync`` commands: the users' keys, agents, ``~/.ssh/config`` and
jump hosts work as they do for ``ssh`` itself.
"""

from edgecnn.remote.transport import Board, RemoteError, parse_board

__all__ = ["Board", "RemoteError", "parse_board"]
