"""The error types that mean "the user's input is wrong", shown by the CLI as one clear line."""

from __future__ import annotations

from edgeskip_runtime.bundle import BundleError

from compiler_passes import PassError
from edgeskip.compile.errors import CompileError
from edgeskip.data.base import DatasetError
from edgeskip.deploy.deploy import DeployError
from edgeskip.deploy.ssh import SSHError
from edgeskip.evaluation.client import ServerUnreachable
from edgeskip.models.protocol import ProtocolError
from edgeskip.training.checkpoint import CheckpointError

USER_ERRORS: tuple[type[Exception], ...] = (DatasetError, CheckpointError, ProtocolError, ValueError, FileNotFoundError,
                                            CompileError, PassError, BundleError, ServerUnreachable, SSHError,
                                            DeployError)
