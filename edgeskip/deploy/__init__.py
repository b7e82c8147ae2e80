"""Deploying bundles to edge boards over ssh (README, "Deploy to a board"): the board runs the adaptive runtime
(Korol et al., Sec. II-B / III-B), so a bundle has to get there safely.

* :mod:`edgeskip.deploy.ssh`: board addresses, the ssh command runner and its errors;
* :mod:`edgeskip.deploy.board`: what a board is (``edgeskip board-check``);
* :mod:`edgeskip.deploy.deploy`: stage, verify, switch, restart, roll back;
* :mod:`edgeskip.deploy.services`: the registry of service managers (systemd, command).
"""

from edgeskip.deploy.board import BoardFacts, probe_board
from edgeskip.deploy.deploy import DeployError, DeployResult, deploy, rollback
from edgeskip.deploy.services import ServiceSettings, get_service_manager, list_service_managers
from edgeskip.deploy.ssh import SSHError, SSHRunner, SSHTarget

__all__ = ["BoardFacts", "DeployError", "DeployResult", "SSHError", "SSHRunner", "SSHTarget", "ServiceSettings",
           "deploy", "get_service_manager", "list_service_managers", "probe_board", "rollback"]
