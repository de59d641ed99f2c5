"""Real-host test lab: Debian hosts as systemd-nspawn containers with systemd as PID 1, each
with its own address on a private bridge, reached over SSH (and by pyinfra) from the root
namespace. See README.md in this folder for the API, the layout and the measured costs."""

from tests.deploy.lab.lab import Address, Lab, cleanup_leftovers, start_lab
from tests.deploy.lab.system import LabError

__all__ = ["Address", "Lab", "LabError", "cleanup_leftovers", "start_lab"]
