"""The command-line client (``appliance convert|jobs|formats|login``): talks to any appliance,
or to CloudConvert itself, over the public v2 API only; it needs nothing of the server's."""
