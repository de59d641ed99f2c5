"""The task operations, one module each; ``enabled.py`` lists those the appliance offers."""
